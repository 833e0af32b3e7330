//! Generates the Wayland signature tables (`$OUT_DIR/tables.rs`, included by `src/protocol.rs`)
//! from the protocol XML installed on the build machine.
//!
//! Inputs: every `*.xml` under the directories of `WAYSOCK_PROTOCOL_DIRS` (colon-separated),
//! by default `/usr/share/wayland:/usr/share/wayland-protocols` (Debian's `libwayland-dev` and
//! `wayland-protocols`). `wayland.xml` must be among them. Interfaces are deduplicated by name,
//! keeping the highest version (on a tie, the first one read: files are read in sorted path
//! order, directory by directory, so `stable/` wins over `staging/` and `unstable/`).
//!
//! The XML is scanned by hand: the protocol files use a small subset of XML (elements,
//! attributes quoted with `"` or `'`, self-closing tags, comments, a prolog), and only
//! `<interface>`, `<request>`, `<event>` and `<arg>` matter here.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const DEFAULT_DIRS: &str = "/usr/share/wayland:/usr/share/wayland-protocols";

struct Arg {
    name: String,
    ty: &'static str,
    interface: Option<String>,
    nullable: bool,
}

struct Message {
    name: String,
    args: Vec<Arg>,
    destructor: bool,
}

struct Interface {
    name: String,
    version: u32,
    requests: Vec<Message>,
    events: Vec<Message>,
    source: PathBuf,
}

fn main() {
    println!("cargo:rerun-if-env-changed=WAYSOCK_PROTOCOL_DIRS");
    println!("cargo:rerun-if-changed=build.rs");
    let dirs = std::env::var("WAYSOCK_PROTOCOL_DIRS").unwrap_or_else(|_| DEFAULT_DIRS.to_owned());

    let mut files = Vec::new();
    for dir in dirs.split(':').filter(|d| !d.is_empty()) {
        let dir = Path::new(dir);
        if !dir.is_dir() {
            println!(
                "cargo:warning=protocol directory {} does not exist; skipped",
                dir.display()
            );
            continue;
        }
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut found = Vec::new();
        collect_xml(dir, &mut found);
        found.sort();
        files.extend(found);
    }
    if !files
        .iter()
        .any(|f| f.file_name().is_some_and(|n| n == "wayland.xml"))
    {
        panic!(
            "waysock-bridge: wayland.xml not found under {dirs:?} (WAYSOCK_PROTOCOL_DIRS or the \
             default). Install the Debian packages `libwayland-dev` (wayland.xml) and \
             `wayland-protocols`, or point WAYSOCK_PROTOCOL_DIRS (colon-separated) at \
             directories holding the protocol XML."
        );
    }

    let mut interfaces: BTreeMap<String, Interface> = BTreeMap::new();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("waysock-bridge: reading {}: {e}", file.display()));
        let parsed = parse(&text, file)
            .unwrap_or_else(|e| panic!("waysock-bridge: {}: {e}", file.display()));
        for iface in parsed {
            match interfaces.get(&iface.name) {
                Some(old) if old.version >= iface.version => {}
                _ => {
                    interfaces.insert(iface.name.clone(), iface);
                }
            }
        }
    }
    if !interfaces.contains_key("wl_display") {
        panic!(
            "waysock-bridge: no wl_display interface in the protocol XML (is wayland.xml intact?)"
        );
    }

    if !interfaces.contains_key("xdg_wm_base") {
        println!(
            "cargo:warning=no xdg_wm_base in the protocol XML: wayland-protocols (Debian package \
             `wayland-protocols`) seems missing; only the core protocol will be decoded"
        );
    }

    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    std::fs::write(out.join("tables.rs"), generate(&interfaces)).expect("writing tables.rs");
}

fn collect_xml(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("waysock-bridge: reading directory {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("waysock-bridge: in {}: {e}", dir.display()));
        let path = entry.path();
        if path.is_dir() {
            collect_xml(&path, out);
        } else if path.extension().is_some_and(|e| e == "xml") {
            out.push(path);
        }
    }
}

/// One XML tag: its name, attributes, and whether it opens, closes or is self-closing.
struct Tag<'a> {
    name: &'a str,
    attrs: Vec<(&'a str, &'a str)>,
    closing: bool,
    self_closing: bool,
}

impl Tag<'_> {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

/// Splits the document into tags, skipping text, comments, the prolog, DOCTYPE and CDATA.
fn tags(text: &str) -> Result<Vec<Tag<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        rest = &rest[start..];
        let skip_to = |rest: &str, open: &str, close: &str| -> Result<usize, String> {
            rest[open.len()..]
                .find(close)
                .map(|i| open.len() + i + close.len())
                .ok_or_else(|| format!("unterminated {open}"))
        };
        if rest.starts_with("<!--") {
            rest = &rest[skip_to(rest, "<!--", "-->")?..];
        } else if rest.starts_with("<![CDATA[") {
            rest = &rest[skip_to(rest, "<![CDATA[", "]]>")?..];
        } else if rest.starts_with("<?") {
            rest = &rest[skip_to(rest, "<?", "?>")?..];
        } else if rest.starts_with("<!") {
            rest = &rest[skip_to(rest, "<!", ">")?..];
        } else {
            let (tag, len) = tag(rest)?;
            out.push(tag);
            rest = &rest[len..];
        }
    }
    Ok(out)
}

/// Parses one tag at the start of `s` (which begins with `<`); returns it and its length.
fn tag(s: &str) -> Result<(Tag<'_>, usize), String> {
    let bytes = s.as_bytes();
    let mut i = 1;
    let closing = bytes.get(1) == Some(&b'/');
    if closing {
        i += 1;
    }
    let name_start = i;
    while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' && bytes[i] != b'/'
    {
        i += 1;
    }
    let name = &s[name_start..i];
    if name.is_empty() {
        return Err(format!("empty tag name near {:?}", &s[..s.len().min(40)]));
    }
    let mut attrs = Vec::new();
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        match bytes.get(i) {
            None => return Err(format!("unterminated tag <{name}")),
            Some(b'>') => {
                return Ok((
                    Tag {
                        name,
                        attrs,
                        closing,
                        self_closing: false,
                    },
                    i + 1,
                ));
            }
            Some(b'/') if bytes.get(i + 1) == Some(&b'>') => {
                return Ok((
                    Tag {
                        name,
                        attrs,
                        closing,
                        self_closing: true,
                    },
                    i + 2,
                ));
            }
            Some(_) => {
                let key_start = i;
                while i < bytes.len()
                    && bytes[i] != b'='
                    && !bytes[i].is_ascii_whitespace()
                    && bytes[i] != b'>'
                {
                    i += 1;
                }
                let key = &s[key_start..i];
                while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
                if bytes.get(i) != Some(&b'=') {
                    return Err(format!("attribute {key:?} of <{name}> has no value"));
                }
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
                let quote = match bytes.get(i) {
                    Some(&q @ (b'"' | b'\'')) => q,
                    _ => return Err(format!("attribute {key:?} of <{name}> is not quoted")),
                };
                let value_start = i + 1;
                let len = s[value_start..]
                    .bytes()
                    .position(|b| b == quote)
                    .ok_or_else(|| {
                        format!("unterminated value of attribute {key:?} in <{name}>")
                    })?;
                attrs.push((key, &s[value_start..value_start + len]));
                i = value_start + len + 1;
            }
        }
    }
}

fn parse(text: &str, file: &Path) -> Result<Vec<Interface>, String> {
    let mut interfaces = Vec::new();
    let mut iface: Option<Interface> = None;
    // The message being read, and whether it is a request.
    let mut message: Option<(Message, bool)> = None;
    for tag in tags(text)? {
        match (tag.name, tag.closing) {
            ("interface", false) => {
                if iface.is_some() {
                    return Err("nested <interface>".into());
                }
                let name = required(&tag, "name")?;
                check_ident(name)?;
                let version = required(&tag, "version")?;
                let version = version
                    .parse()
                    .map_err(|_| format!("interface {name}: bad version {version:?}"))?;
                iface = Some(Interface {
                    name: name.to_owned(),
                    version,
                    requests: Vec::new(),
                    events: Vec::new(),
                    source: file.to_owned(),
                });
                if tag.self_closing {
                    interfaces.extend(iface.take());
                }
            }
            ("interface", true) => {
                if message.is_some() {
                    return Err("</interface> inside a message".into());
                }
                interfaces.push(iface.take().ok_or("</interface> without <interface>")?);
            }
            (kind @ ("request" | "event"), false) => {
                let Some(current) = iface.as_ref() else {
                    return Err(format!("<{kind}> outside an interface"));
                };
                if message.is_some() {
                    return Err(format!("nested <{kind}> in {}", current.name));
                }
                let name = required(&tag, "name")?;
                check_ident(name)?;
                let destructor = match tag.attr("type") {
                    None => false,
                    Some("destructor") => true,
                    Some(other) => {
                        return Err(format!(
                            "{}.{name}: unknown message type {other:?}",
                            current.name
                        ))
                    }
                };
                let m = Message {
                    name: name.to_owned(),
                    args: Vec::new(),
                    destructor,
                };
                message = Some((m, kind == "request"));
                if tag.self_closing {
                    finish_message(&mut iface, &mut message)?;
                }
            }
            ("request" | "event", true) => finish_message(&mut iface, &mut message)?,
            ("arg", false) => {
                let Some((m, _)) = message.as_mut() else {
                    return Err("<arg> outside a message".into());
                };
                let name = required(&tag, "name")?;
                let ty = match required(&tag, "type")? {
                    "int" => "Int",
                    "uint" => "Uint",
                    "fixed" => "Fixed",
                    "string" => "String",
                    "object" => "Object",
                    "new_id" => "NewId",
                    "array" => "Array",
                    "fd" => "Fd",
                    other => return Err(format!("{}: arg {name}: unknown type {other:?}", m.name)),
                };
                let interface = tag.attr("interface").map(str::to_owned);
                if let Some(i) = &interface {
                    check_ident(i)?;
                }
                let nullable = tag.attr("allow-null") == Some("true");
                m.args.push(Arg {
                    name: name.to_owned(),
                    ty,
                    interface,
                    nullable,
                });
            }
            _ => {}
        }
    }
    if iface.is_some() {
        return Err("unterminated <interface>".into());
    }
    Ok(interfaces)
}

fn finish_message(
    iface: &mut Option<Interface>,
    message: &mut Option<(Message, bool)>,
) -> Result<(), String> {
    let (m, is_request) = message
        .take()
        .ok_or("closing a message that was not opened")?;
    let iface = iface.as_mut().ok_or("message outside an interface")?;
    if is_request {
        iface.requests.push(m);
    } else {
        iface.events.push(m);
    }
    Ok(())
}

fn required<'a>(tag: &'a Tag<'_>, attr: &str) -> Result<&'a str, String> {
    tag.attr(attr)
        .ok_or_else(|| format!("<{}> without a {attr:?} attribute", tag.name))
}

fn check_ident(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not a valid protocol identifier"))
    }
}

fn generate(interfaces: &BTreeMap<String, Interface>) -> String {
    let mut s = String::new();
    s.push_str("// @generated by build.rs from the Wayland protocol XML. Do not edit.\n");
    s.push_str(
        "/// Every interface known at build time, sorted by name (see [`find_interface`]).\n",
    );
    s.push_str("pub static INTERFACES: &[Interface] = &[\n");
    // BTreeMap iterates in byte order of the names, which is the order `str::cmp` uses.
    for iface in interfaces.values() {
        let _ = writeln!(s, "    // from {}", iface.source.display());
        let _ = writeln!(
            s,
            "    Interface {{ name: {:?}, version: {}, requests: &[",
            iface.name, iface.version
        );
        write_messages(&mut s, &iface.requests);
        s.push_str("    ], events: &[\n");
        write_messages(&mut s, &iface.events);
        s.push_str("    ] },\n");
    }
    s.push_str("];\n");
    s
}

fn write_messages(s: &mut String, messages: &[Message]) {
    for m in messages {
        let _ = writeln!(
            s,
            "        Message {{ name: {:?}, destructor: {}, args: &[",
            m.name, m.destructor
        );
        for a in &m.args {
            let interface = match &a.interface {
                Some(i) => format!("Some({i:?})"),
                None => "None".to_owned(),
            };
            let _ = writeln!(
                s,
                "            Arg {{ name: {:?}, ty: ArgType::{}, interface: {interface}, nullable: {} }},",
                a.name, a.ty, a.nullable
            );
        }
        s.push_str("        ] },\n");
    }
}
