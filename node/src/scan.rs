//! Looking into XML the edge already holds as bytes, without parsing it:
//! the end of a start tag, an attribute's value in it, a byte string.
//! For the WebSocket framing (`ws.rs`) and client state indication
//! (`csi.rs`), which look at every stanza they pass on.

/// The length of the start tag at the head of `b` (through its `>`),
/// quotes respected; `None` while it is incomplete.
pub(crate) fn start_tag(b: &[u8]) -> Option<usize> {
    let mut quote = None;
    for (i, &c) in b.iter().enumerate() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'\'' | b'"') => quote = Some(c),
            (None, b'>') => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// The value of attribute `name` in the start tag `head`, as written
/// (entities not resolved).
pub(crate) fn attr<'a>(head: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut at = 0;
    while at < head.len() {
        let i = at + find(&head[at..], name)?;
        let before = i.checked_sub(1).map(|j| head[j]);
        let after = &head[i + name.len()..];
        let mut k = 0;
        while k < after.len() && after[k].is_ascii_whitespace() {
            k += 1;
        }
        if before.is_some_and(|c| c.is_ascii_whitespace()) && after.get(k) == Some(&b'=') {
            k += 1;
            while k < after.len() && after[k].is_ascii_whitespace() {
                k += 1;
            }
            let q = *after.get(k)?;
            if q == b'\'' || q == b'"' {
                let v = &after[k + 1..];
                let end = v.iter().position(|&c| c == q)?;
                return Some(&v[..end]);
            }
        }
        at = i + name.len();
    }
    None
}

/// Where `needle` first is in `hay`.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
