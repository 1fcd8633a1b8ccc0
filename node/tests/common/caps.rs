//! XEP-0115 capabilities and RFC 6121 presence subscriptions as a test
//! client does them: a client's disco#info answer, the `<c/>` of its
//! presence, and a mutual subscription between two accounts.

use proto::{Element, ns};

use super::Client;

/// `x` (`xj`) subscribes to `y` (`yj`), who approves; `x` gets `y`'s
/// presence.
pub async fn subscribe(x: &mut Client, y: &mut Client, xj: &str, yj: &str) {
    x.send(&format!("<presence to='{yj}' type='subscribe'/>"))
        .await;
    y.expect(|e| e.name == "presence" && e.attr("type") == Some("subscribe"))
        .await
        .expect("request");
    y.send(&format!("<presence to='{xj}' type='subscribed'/>"))
        .await;
    x.expect(|e| {
        e.name == "presence"
            && e.attr("type").is_none()
            && e.attr("from").is_some_and(|f| f.starts_with(yj))
    })
    .await
    .expect("presence after approval");
}

/// A client's entity capabilities (XEP-0115): its disco#info answer's
/// children and the `<c/>` its presence carries, hashed as §5.1 says.
pub struct Caps {
    pub node: String,
    pub ver: String,
    pub children: String,
}

impl Caps {
    pub fn new(node: &str, features: &[&str]) -> Caps {
        let mut children = String::from("<identity category='client' type='pc' name='test'/>");
        for f in features {
            children.push_str(&format!("<feature var='{f}'/>"));
        }
        let q = format!("<query xmlns='{}'>{children}</query>", ns::DISCO_INFO);
        let q = Element::parse(q.as_bytes(), "", &[]).expect("query");
        let ver = proto::caps::ver("sha-1", &q).expect("ver");
        Caps {
            node: node.into(),
            ver,
            children,
        }
    }

    pub fn presence(&self, extra: &str) -> String {
        format!(
            "<presence>{extra}<c xmlns='{}' hash='sha-1' node='{}' ver='{}'/></presence>",
            ns::CAPS,
            self.node,
            self.ver
        )
    }

    /// Answer the server's question about this hash (the next disco#info
    /// get the client gets).
    pub async fn answer(&self, c: &mut Client) {
        let q = c
            .expect(|e| {
                e.name == "iq"
                    && e.attr("type") == Some("get")
                    && e.child("query", ns::DISCO_INFO).is_some()
            })
            .await
            .expect("the server asks what the hash means");
        let node = format!("{}#{}", self.node, self.ver);
        assert_eq!(
            q.child("query", ns::DISCO_INFO)
                .and_then(|x| x.attr("node")),
            Some(node.as_str())
        );
        c.send(&format!(
            "<iq type='result' id='{}' to='{}'><query xmlns='{}' node='{node}'>{}</query></iq>",
            q.attr("id").expect("id"),
            q.attr("from").expect("from"),
            ns::DISCO_INFO,
            self.children
        ))
        .await;
    }
}
