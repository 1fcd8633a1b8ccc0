#!/usr/bin/env python3
"""Checks of the rendered Kubernetes objects, for deploy/check.sh.

Run with the Python of deploy/check.sh's venv (PyYAML, jsonschema,
kubernetes-validate and promql-parser installed). Subcommands, each exiting non-zero on any
failure:

  schema FILE...        every object against the Kubernetes OpenAPI schema
                        (kubernetes-validate, strict) of each version in
                        $K8S_VERSIONS; ServiceMonitor (a CRD, no built-in
                        schema) against SERVICEMONITOR_SCHEMA below
  wiring FILE...        each file is one rendering (kustomize or helm): the
                        objects fit together (names, ports, mounts, RBAC,
                        selectors) and the generated xmppd configuration
                        agrees with them
  toml OUTDIR FILE...   extract every *.toml of the ConfigMaps, parse it
                        (tomllib) and write it to OUTDIR for `xmppd config
                        check`
  grafana FILE          the dashboard: JSON, panels, datasource, every query
                        valid PromQL naming known xmppd_/process_ metrics
  context ROOT          the Docker build context that .dockerignore leaves
                        holds what the build needs: the workspace's
                        manifests, sources, build scripts, the files they
                        embed (include_str!/include_bytes!) and the files
                        the Dockerfile copies
"""

import json
import os
import re
import sys

import jsonschema
import promql_parser
import yaml

try:
    import tomllib
except ImportError:  # Python < 3.11: check.sh installs tomli
    import tomli as tomllib

# The metrics the dashboard may use: those the server exports today, and
# those announced (histograms without their _bucket/_sum/_count suffix).
KNOWN_METRICS = {
    # today (README "Metrics and health", checked against a running binary)
    "xmppd_build_info",
    "xmppd_client_connections",
    "xmppd_client_connections_accepted_total",
    "xmppd_client_connections_refused_total",
    "xmppd_client_received_bytes_total",
    "xmppd_client_sent_bytes_total",
    "xmppd_login_failures_total",
    "xmppd_logins_total",
    "xmppd_registrations_total",
    "xmppd_sessions",
    "xmppd_shard_applied_index",
    "xmppd_shard_apply_lag_entries",
    "xmppd_shard_leader",
    "xmppd_shard_term",
    "xmppd_slow_client_disconnects_total",
    "xmppd_stanzas_received_total",
    "xmppd_stanzas_sent_total",
    "process_cpu_seconds_total",
    "process_max_fds",
    "process_open_fds",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "xmppd_core_link_up",
    "xmppd_rocksdb_size_bytes",
    "xmppd_rocksdb_memtable_bytes",
    "xmppd_rocksdb_pending_compaction_bytes",
    "xmppd_rocksdb_running_compactions",
    "xmppd_rocksdb_write_stopped",
    "xmppd_rocksdb_delayed_write_rate_bytes",
    "xmppd_raft_commit_latency_seconds",
    "xmppd_shard_queue_depth",
    "xmppd_edge_queue_depth",
    "xmppd_offline_store_keys",
    "xmppd_offline_store_bytes",
    # announced, not served yet
    "xmppd_routing_latency_seconds",
}

# The fields of monitoring.coreos.com/v1 ServiceMonitor that the manifests
# use, as the Prometheus Operator's CRD defines them; anything else is
# refused, so a typo does not pass unnoticed.
_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "operator"],
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
SERVICEMONITOR_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": _LABEL_SELECTOR,
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "jobLabel": {"type": "string"},
                "targetLabels": {"type": "array", "items": {"type": "string"}},
                "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "targetPort": {"type": ["string", "integer"]},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                            "honorLabels": {"type": "boolean"},
                            "bearerTokenSecret": {"type": "object"},
                            "relabelings": {"type": "array"},
                            "metricRelabelings": {"type": "array"},
                        },
                    },
                },
            },
        },
    },
}

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL " + msg)


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def name_of(obj):
    return "%s/%s" % (obj.get("kind"), obj.get("metadata", {}).get("name"))


def finish(what):
    if failures:
        print("%s: %d problem(s)" % (what, len(failures)))
        sys.exit(1)


# ---------------------------------------------------------------- schema


def cmd_schema(paths):
    from kubernetes_validate import utils as kv

    versions = os.environ.get("K8S_VERSIONS", "1.37.0").split()
    counts = {}
    for path in paths:
        for obj in load(path):
            kind = obj.get("kind")
            where = "%s: %s" % (os.path.basename(path), name_of(obj))
            if kind == "ServiceMonitor":
                errors = sorted(jsonschema.Draft202012Validator(SERVICEMONITOR_SCHEMA).iter_errors(obj), key=str)
                for e in errors:
                    fail("%s: %s: %s" % (where, "/".join(map(str, e.absolute_path)), e.message))
                counts["ServiceMonitor (own schema)"] = counts.get("ServiceMonitor (own schema)", 0) + 1
                continue
            for v in versions:
                try:
                    kv.validate(obj, v, strict=True)
                except kv.ValidationError as e:
                    fail("%s: Kubernetes %s: %s: %s" % (where, v, ".".join(map(str, e.path)), e.message))
                except kv.SchemaNotFoundError as e:
                    fail("%s: %s" % (where, e.message))
            counts[kind] = counts.get(kind, 0) + 1
    print("validated against Kubernetes %s (strict): %s" % (
        ", ".join(versions), ", ".join("%s x%d" % kv_ for kv_ in sorted(counts.items()))))
    finish("schema")


# ---------------------------------------------------------------- toml


def configmap_tomls(objs):
    for obj in objs:
        if obj.get("kind") == "ConfigMap":
            for key, text in (obj.get("data") or {}).items():
                if key.endswith(".toml"):
                    yield obj["metadata"]["name"], key, text


def cmd_toml(outdir, paths):
    os.makedirs(outdir, exist_ok=True)
    n = 0
    for path in paths:
        if path.endswith(".toml"):
            sources = [("file", os.path.basename(path), open(path).read())]
            tag = "image"
        else:
            sources = list(configmap_tomls(load(path)))
            tag = os.path.splitext(os.path.basename(path))[0]
            if not sources:
                fail("%s: no ConfigMap with a .toml key" % path)
        for cm, key, text in sources:
            try:
                tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                fail("%s: %s/%s: not TOML: %s" % (path, cm, key, e))
                continue
            out = os.path.join(outdir, "%s--%s" % (tag, key))
            with open(out, "w") as f:
                f.write(text)
            print("parsed %s (%s/%s)" % (out, cm, key))
            n += 1
    print("%d TOML configuration(s) parse" % n)
    finish("toml")


# ---------------------------------------------------------------- wiring


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def selects(selector, labels):
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        val = labels.get(e["key"])
        op = e["operator"]
        if op == "In" and val not in e.get("values", []):
            return False
        if op == "NotIn" and val in e.get("values", []):
            return False
        if op == "Exists" and val is None:
            return False
        if op == "DoesNotExist" and val is not None:
            return False
    return True


def check_rendering(path):
    objs = load(path)
    label = os.path.basename(path)
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o

    def need(cond, msg):
        if not cond:
            fail("%s: %s" % (label, msg))
        return cond

    stss = list(by_kind.get("StatefulSet", {}).values())
    deps = list(by_kind.get("Deployment", {}).values())
    if not (need(len(stss) == 1, "expected one StatefulSet (core), got %d" % len(stss))
            and need(len(deps) == 1, "expected one Deployment (edge), got %d" % len(deps))):
        return
    sts, dep = stss[0], deps[0]
    services = by_kind.get("Service", {})
    configmaps = by_kind.get("ConfigMap", {})

    def container(w):
        return w["spec"]["template"]["spec"]["containers"][0]

    def ports(w):
        return {p["name"]: p["containerPort"] for p in container(w).get("ports", [])}

    def config_of(w, role):
        """The TOML the workload's XMPPD_CONFIG names, through its mounts."""
        c = container(w)
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        cfg_path = env.get("XMPPD_CONFIG")
        if not need(cfg_path, "%s: no XMPPD_CONFIG" % name_of(w)):
            return None
        vols = {v["name"]: v for v in w["spec"]["template"]["spec"].get("volumes", [])}
        for m in c.get("volumeMounts", []):
            mp = m["mountPath"].rstrip("/") + "/"
            if cfg_path.startswith(mp):
                vol = vols.get(m["name"], {})
                cm = configmaps.get(vol.get("configMap", {}).get("name"))
                key = cfg_path[len(mp):]
                if need(cm is not None, "%s: XMPPD_CONFIG %s is not on a ConfigMap of this rendering" % (name_of(w), cfg_path)) \
                        and need(key in cm.get("data", {}), "%s: ConfigMap %s has no key %s" % (name_of(w), cm["metadata"]["name"], key)):
                    cfg = tomllib.loads(cm["data"][key])
                    need(cfg.get("cluster", {}).get("role") == role, "%s: %s has cluster.role %r, not %r" % (
                        name_of(w), key, cfg.get("cluster", {}).get("role"), role))
                    return cfg
                return None
        need(False, "%s: XMPPD_CONFIG %s is on no volume mount" % (name_of(w), cfg_path))
        return None

    def mounted(w, path):
        return any(path.startswith(m["mountPath"].rstrip("/") + "/") or path == m["mountPath"]
                   for m in container(w).get("volumeMounts", []))

    def writable_mount(w, path):
        return any(path == m["mountPath"] and not m.get("readOnly") for m in container(w).get("volumeMounts", []))

    for w in (sts, dep):
        n = name_of(w)
        pod = w["spec"]["template"]["spec"]
        c = container(w)
        psc = pod.get("securityContext", {})
        csc = c.get("securityContext", {})
        need(psc.get("runAsNonRoot") is True, "%s: runAsNonRoot" % n)
        need(psc.get("runAsUser") == 10001 and psc.get("fsGroup") == 10001, "%s: runAsUser/fsGroup 10001" % n)
        need(csc.get("readOnlyRootFilesystem") is True, "%s: readOnlyRootFilesystem" % n)
        need(csc.get("allowPrivilegeEscalation") is False, "%s: allowPrivilegeEscalation false" % n)
        need("ALL" in csc.get("capabilities", {}).get("drop", []), "%s: capabilities drop ALL" % n)
        need(c.get("resources", {}).get("requests") and c.get("resources", {}).get("limits"), "%s: resources" % n)
        for probe, path_ in (("startupProbe", "/startupz"), ("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
            hg = c.get(probe, {}).get("httpGet", {})
            need(hg.get("path") == path_ and hg.get("port") == "http", "%s: %s on http %s" % (n, probe, path_))
        need("http" in ports(w), "%s: no container port named http" % n)
        sel = w["spec"]["selector"]["matchLabels"]
        need(selects({"matchLabels": sel}, w["spec"]["template"]["metadata"]["labels"]), "%s: selector does not match its pods" % n)

    # --- core
    core = config_of(sts, "core")
    cports = ports(sts)
    svc_name = sts["spec"]["serviceName"]
    hsvc = services.get(svc_name)
    if need(hsvc is not None, "StatefulSet serviceName %s has no Service" % svc_name):
        need(hsvc["spec"].get("clusterIP") == "None", "Service %s is not headless" % svc_name)
        need(hsvc["spec"].get("publishNotReadyAddresses") is True, "Service %s: publishNotReadyAddresses" % svc_name)
        need(selects({"matchLabels": hsvc["spec"]["selector"]}, sts["spec"]["template"]["metadata"]["labels"]),
             "Service %s does not select the core pods" % svc_name)
    need(sts["spec"].get("podManagementPolicy") == "Parallel", "core: podManagementPolicy Parallel")
    need(any(t["metadata"]["name"] == "data" for t in sts["spec"].get("volumeClaimTemplates", [])), "core: volumeClaimTemplate data")
    need(writable_mount(sts, "/data"), "core: /data is not a writable mount")
    need(sts["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30) >= 300, "core: terminationGracePeriodSeconds >= 300")
    pre = container(sts).get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    need(pre == ["xmppd", "cluster", "leave", "--if-scaled-down"], "core: preStop runs xmppd cluster leave --if-scaled-down")
    env = [e["name"] for e in container(sts).get("env", [])]
    need("POD_NAME" in env and "POD_NAMESPACE" in env, "core: POD_NAME and POD_NAMESPACE from the downward API")
    sa = sts["spec"]["template"]["spec"].get("serviceAccountName")
    if need(sa in by_kind.get("ServiceAccount", {}), "core: ServiceAccount %s missing" % sa):
        ok = False
        for rb in by_kind.get("RoleBinding", {}).values():
            if any(s["kind"] == "ServiceAccount" and s["name"] == sa for s in rb.get("subjects", [])):
                role = by_kind.get("Role", {}).get(rb["roleRef"]["name"])
                for r in (role or {}).get("rules", []):
                    if "apps" in r.get("apiGroups", []) and "statefulsets" in r.get("resources", []) \
                            and "get" in r.get("verbs", []) \
                            and sts["metadata"]["name"] in r.get("resourceNames", [sts["metadata"]["name"]]):
                        ok = True
        need(ok, "core: no Role bound to %s grants get on StatefulSet %s" % (sa, sts["metadata"]["name"]))
    if core:
        cl = core.get("cluster", {})
        sts_name = sts["metadata"]["name"]
        need(cl.get("node_id") == "ordinal", "core.toml: cluster.node_id = \"ordinal\"")
        need(cl.get("auto_join") is True, "core.toml: cluster.auto_join = true")
        need(port_of(cl.get("listen", ":0")) == cports.get("grpc"), "core.toml: cluster.listen port != container port grpc")
        adv = cl.get("advertise", "")
        need(adv.startswith("{hostname}.%s" % svc_name) and port_of(adv) == cports.get("grpc"),
             "core.toml: cluster.advertise %r is not {hostname}.%s...:%s" % (adv, svc_name, cports.get("grpc")))
        peers = cl.get("peers", [])
        need(1 <= len(peers) <= sts["spec"]["replicas"], "core.toml: %d peers for %d replicas" % (len(peers), sts["spec"]["replicas"]))
        for i, p in enumerate(peers):
            want = "%d=%s-%d.%s" % (i + 1, sts_name, i, svc_name)
            need(p.startswith(want) and port_of(p) == cports.get("grpc"), "core.toml: peers[%d] = %r, expected %s...:%s" % (i, p, want, cports.get("grpc")))
        need(port_of(core.get("listeners", {}).get("http", ":0")) == cports.get("http"), "core.toml: listeners.http port != container port http")
        need(core.get("data_dir") == "/data", "core.toml: data_dir /data")
        tf = core.get("admin", {}).get("token_file")
        need(tf and mounted(sts, tf), "core.toml: admin.token_file %r is not mounted" % tf)

    # Traced pods name themselves in their spans: OTEL_RESOURCE_ATTRIBUTES
    # refers to POD_NAME, which must come before it for $(POD_NAME) to
    # expand.
    for w, cfg in ((sts, core), (dep, config_of(dep, "edge"))):
        if cfg and cfg.get("tracing", {}).get("otlp_endpoint"):
            names = [e["name"] for e in container(w).get("env", [])]
            attrs = next((e.get("value", "") for e in container(w).get("env", [])
                          if e["name"] == "OTEL_RESOURCE_ATTRIBUTES"), "")
            need("k8s.pod.name=$(POD_NAME)" in attrs and "POD_NAME" in names
                 and names.index("POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES"),
                 "%s: traced, but OTEL_RESOURCE_ATTRIBUTES does not name the pod after POD_NAME"
                 % w["metadata"]["name"])

    # --- edge
    edge = config_of(dep, "edge")
    eports = ports(dep)
    need(dep["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30) >= 60, "edge: terminationGracePeriodSeconds >= 60")
    need(writable_mount(dep, "/data"), "edge: /data is not a writable mount")
    if edge:
        core_addr = edge.get("cluster", {}).get("core", "")
        need(core_addr.split(".")[0].split(":")[0] == svc_name and port_of(core_addr) == cports.get("grpc"),
             "edge.toml: cluster.core %r is not the core Service %s on the grpc port" % (core_addr, svc_name))
        lst = dict(edge.get("listeners", {}))
        # Federation listens where [s2s] says, when it is on.
        s2s = edge.get("s2s", {})
        if s2s.get("enabled"):
            lst["s2s"] = s2s.get("listen", "0.0.0.0:5269")
        need(port_of(lst.get("http", ":0")) == eports.get("http"), "edge.toml: listeners.http port != container port http")
        for key, pname in (("c2s", "xmpp-client"), ("c2s_direct_tls", "xmpps-client"), ("s2s", "xmpp-server"), ("web", "web")):
            if lst.get(key):
                need(port_of(lst[key]) == eports.get(pname), "edge.toml: %s port != container port %s" % ("s2s.listen" if key == "s2s" else "listeners." + key, pname))
            elif pname in eports:
                need(False, "edge: container port %s but no %s" % (pname, "[s2s] enabled" if key == "s2s" else "listeners." + key))
        tls = edge.get("tls", {})
        for k in ("cert", "key"):
            if tls.get(k):
                need(mounted(dep, tls[k]), "edge.toml: tls.%s %s is not mounted" % (k, tls[k]))
        need("token_file" not in edge.get("admin", {}), "edge.toml: admin.token_file is for core nodes only")
        mc = edge.get("limits", {}).get("max_connections", 15000)
        for hpa in by_kind.get("HorizontalPodAutoscaler", {}).values():
            need(hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"], "HPA targets %s" % hpa["spec"]["scaleTargetRef"]["name"])
            for m in hpa["spec"].get("metrics", []):
                if m["type"] == "Pods":
                    need(m["pods"]["metric"]["name"] in KNOWN_METRICS, "HPA metric %s unknown" % m["pods"]["metric"]["name"])
                    need(int(m["pods"]["target"]["averageValue"]) < mc, "HPA target %s >= limits.max_connections %s" % (
                        m["pods"]["target"]["averageValue"], mc))

    # --- Services, PDBs, ServiceMonitor
    for s in services.values():
        pod_labels = None
        for w in (sts, dep):
            if selects({"matchLabels": s["spec"].get("selector", {})}, w["spec"]["template"]["metadata"]["labels"]):
                pod_labels = w
        if not need(pod_labels is not None, "Service %s selects no workload" % s["metadata"]["name"]):
            continue
        for p in s["spec"]["ports"]:
            need(p.get("targetPort") in ports(pod_labels), "Service %s: targetPort %s is no container port of %s" % (
                s["metadata"]["name"], p.get("targetPort"), name_of(pod_labels)))
        if s["spec"].get("type") in ("LoadBalancer", "NodePort"):
            exposed = {p.get("targetPort") for p in s["spec"]["ports"]}
            need(not exposed & {"http", "grpc"}, "Service %s exposes http/grpc publicly" % s["metadata"]["name"])
    for pdb in by_kind.get("PodDisruptionBudget", {}).values():
        need(sum(selects(pdb["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"]) for w in (sts, dep)) == 1,
             "PDB %s selects not exactly one workload" % pdb["metadata"]["name"])
    for sm in by_kind.get("ServiceMonitor", {}).values():
        scraped = [s for s in services.values() if selects(sm["spec"]["selector"], s["metadata"].get("labels", {}))
                   and any(p["name"] == e.get("port") for e in sm["spec"]["endpoints"] for p in s["spec"]["ports"])]
        names = sorted(s["metadata"]["name"] for s in scraped)
        need(len(scraped) == 2, "ServiceMonitor %s scrapes %s, expected the core and edge Services" % (sm["metadata"]["name"], names))
    print("%s: %d objects wired together" % (label, len(objs)))


def cmd_wiring(paths):
    for p in paths:
        check_rendering(p)
    finish("wiring")


# ---------------------------------------------------------------- grafana


METRIC_RE = re.compile(r"\b((?:xmppd|process)_[a-z0-9_]+)")


def cmd_grafana(path):
    with open(path) as f:
        dash = json.load(f)
    need_ds = "${DS_PROMETHEUS}"
    if dash.get("schemaVersion", 0) < 36:
        fail("schemaVersion %s < 36" % dash.get("schemaVersion"))
    var_names = [v.get("name") for v in dash.get("templating", {}).get("list", [])]
    if "DS_PROMETHEUS" not in var_names:
        fail("no templating variable DS_PROMETHEUS")
    panels = []
    for p in dash.get("panels", []):
        panels.append(p)
        panels.extend(p.get("panels", []))
    ids = [p.get("id") for p in panels]
    if len(ids) != len(set(ids)):
        fail("duplicate panel ids")
    used = set()
    n_queries = 0
    for p in panels:
        if p.get("type") == "row":
            continue
        title = p.get("title", "?")
        if not p.get("gridPos"):
            fail("%s: no gridPos" % title)
        if (p.get("datasource") or {}).get("uid") != need_ds:
            fail("%s: datasource is not %s" % (title, need_ds))
        targets = p.get("targets") or []
        if not targets:
            fail("%s: no query" % title)
        for t in targets:
            expr = t.get("expr", "")
            names = set(METRIC_RE.findall(expr))
            if not names:
                fail("%s: expr names no xmppd_ or process_ metric: %r" % (title, expr))
            for name in names:
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                if base not in KNOWN_METRICS and name not in KNOWN_METRICS:
                    fail("%s: unknown metric %s" % (title, name))
                used.add(base if base in KNOWN_METRICS else name)
            # Grafana's interval variables stand for durations.
            promql = expr.replace("$__rate_interval", "5m").replace("$__range", "1h").replace("$__interval", "1m")
            try:
                promql_parser.parse(promql)
            except ValueError as e:
                fail("%s: PromQL %r: %s" % (title, expr, e))
            n_queries += 1
    print("%s: %d panels, %d queries, %d metrics" % (os.path.basename(path), len(panels), n_queries, len(used)))
    finish("grafana")


# ---------------------------------------------------------------- context


def _dockerignore_regex(pattern):
    """A .dockerignore pattern (root-relative, `*`, `?`, `**`) as a regex
    matching a path and everything under it."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        out += "[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c)
        i += 1
    return re.compile("^" + out + "(?:/.*)?$")


def cmd_context(root):
    rules = []
    with open(os.path.join(root, ".dockerignore")) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            keep = line.startswith("!")
            pat = os.path.normpath(line.lstrip("!").strip("/"))
            rules.append((keep, _dockerignore_regex(pat)))

    def excluded(rel):
        out = False
        for keep, rx in rules:  # the last matching rule wins
            if rx.match(rel):
                out = not keep
        return out

    with open(os.path.join(root, "Cargo.toml"), "rb") as f:
        members = tomllib.load(f)["workspace"]["members"]
    needed = ["Cargo.toml", "Cargo.lock"]
    for m in members:
        needed.append(m + "/Cargo.toml")
        for dirpath, _, files in os.walk(os.path.join(root, m)):
            rel_dir = os.path.relpath(dirpath, root)
            if "/target" in "/" + rel_dir or not (rel_dir.startswith(m + "/src") or rel_dir == m):
                continue
            for name in files:
                rel = os.path.normpath(os.path.join(rel_dir, name))
                if name.endswith(".rs") or name.endswith(".proto"):
                    needed.append(rel)
                if name.endswith(".rs"):
                    text = open(os.path.join(root, rel), errors="replace").read()
                    for inc in re.findall(r'include_(?:str|bytes)!\(\s*"([^"]+)"', text):
                        needed.append(os.path.normpath(os.path.join(rel_dir, inc)))
    with open(os.path.join(root, "Dockerfile")) as f:
        for line in f:
            mt = re.match(r"^COPY\s+(?:--\S+\s+)*(\S+)\s+\S+\s*$", line.strip())
            if mt and "--from" not in line and mt.group(1) != ".":
                needed.append(os.path.normpath(mt.group(1)))
    missing = [n for n in needed if not os.path.exists(os.path.join(root, n))]
    for n in missing:
        if n.startswith("../") or "/tests/" in n:
            continue  # test-only embeds outside src/ are not built by the image
        fail("%s is needed by the build but does not exist" % n)
    for n in needed:
        if excluded(n):
            fail("%s is needed by the build but .dockerignore excludes it" % n)
    print("docker context: %d files the build needs checked against .dockerignore (members: %s)" % (
        len(needed), ", ".join(members)))
    finish("context")


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        sys.exit(2)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "schema":
        cmd_schema(args)
    elif cmd == "wiring":
        cmd_wiring(args)
    elif cmd == "toml":
        cmd_toml(args[0], args[1:])
    elif cmd == "grafana":
        cmd_grafana(args[0])
    elif cmd == "context":
        cmd_context(args[0])
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
