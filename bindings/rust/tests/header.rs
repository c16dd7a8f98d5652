//! Checks `src/sys.rs` against `include/llm.h`: every function (name,
//! parameter types, return type), every struct (field names, order and
//! types), every enum constant, typedef, function-pointer type and numeric
//! `#define`. A declaration the header gains and sys.rs lacks, or a change
//! in either, fails the test; so does a construct this small C parser does
//! not know (extend it then).
use std::collections::BTreeMap;

const HEADER: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../include/llm.h"));
const SYS_RS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/sys.rs"));

#[derive(Debug, Default)]
struct Api {
    /// name -> (parameter types, return type), all as Rust type strings
    functions: BTreeMap<String, (Vec<String>, String)>,
    /// name -> fields (name, Rust type); None for an opaque struct
    structs: BTreeMap<String, Option<Vec<(String, String)>>>,
    /// type aliases: name -> Rust type (enums map to "c_int")
    aliases: BTreeMap<String, String>,
    /// function-pointer typedefs: name -> (parameter types, return type)
    fn_types: BTreeMap<String, (Vec<String>, String)>,
    /// enum constants and numeric #defines: name -> value
    constants: BTreeMap<String, i64>,
}

// ---- the C header --------------------------------------------------------------

fn strip_c_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && i + 1 < b.len() && b[i + 1] == b'*' {
            let end = src[i + 2..].find("*/").expect("unterminated comment") + i + 4;
            out.push(' ');
            i = end;
        } else if b[i] == b'/' && i + 1 < b.len() && b[i + 1] == b'/' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn tokenize(src: &str) -> Vec<String> {
    let mut toks = Vec::new();
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            toks.push(chars[start..i].iter().collect());
        } else if c == '"' {
            let start = i;
            i += 1;
            while chars[i] != '"' {
                i += 1;
            }
            i += 1;
            toks.push(chars[start..i].iter().collect());
        } else {
            toks.push(c.to_string());
            i += 1;
        }
    }
    toks
}

fn c_base_to_rust(base: &str) -> String {
    match base {
        "void" => "c_void",
        "char" => "c_char",
        "int" => "c_int",
        "unsigned" => "c_uint",
        "float" => "f32",
        "double" => "f64",
        "size_t" => "usize",
        "int8_t" => "i8",
        "uint8_t" => "u8",
        "int16_t" => "i16",
        "uint16_t" => "u16",
        "int32_t" => "i32",
        "uint32_t" => "u32",
        "int64_t" => "i64",
        "uint64_t" => "u64",
        other if other.starts_with("llm_") => other,
        other => panic!("C type `{other}` is not known to tests/header.rs: extend c_base_to_rust"),
    }
    .to_string()
}

/// Rust type of a C type given as tokens (no declarator name), e.g.
/// `const llm_model *` -> `*const llm_model`, `char **` -> `*mut *mut c_char`.
fn c_type_to_rust(toks: &[String]) -> String {
    let mut i = 0;
    let mut pointee_const = false;
    if toks[i] == "const" {
        pointee_const = true;
        i += 1;
    }
    let base = &toks[i];
    i += 1;
    if i < toks.len() && toks[i] == "const" {
        pointee_const = true;
        i += 1;
    }
    if base == "void" && i == toks.len() {
        return "()".into();
    }
    let mut ty = c_base_to_rust(base);
    while i < toks.len() {
        assert_eq!(toks[i], "*", "unexpected `{}` in C type {:?}", toks[i], toks);
        i += 1;
        let next_const = i < toks.len() && toks[i] == "const";
        if next_const {
            i += 1;
        }
        ty = format!("*{} {}", if pointee_const { "const" } else { "mut" }, ty);
        pointee_const = next_const;
    }
    ty
}

/// A declaration such as `const char *stop[LLM_MAX_STOP_STRINGS]` -> (name, Rust type).
fn c_decl(toks: &[String]) -> (String, String) {
    let mut toks = toks.to_vec();
    let mut array = None;
    if toks.last().map(String::as_str) == Some("]") {
        let open = toks.iter().rposition(|t| t == "[").expect("[");
        array = Some(toks[open + 1..toks.len() - 1].join(""));
        toks.truncate(open);
    }
    let name = toks.pop().expect("declaration name");
    assert!(
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "declaration without a name: {toks:?} {name}"
    );
    let mut ty = c_type_to_rust(&toks);
    if let Some(n) = array {
        ty = format!("[{ty}; {n}]");
    }
    (name, ty)
}

/// Splits tokens at top-level commas.
fn split_commas(toks: &[String]) -> Vec<Vec<String>> {
    let mut parts = vec![Vec::new()];
    let mut depth = 0;
    for t in toks {
        match t.as_str() {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => depth -= 1,
            "," if depth == 0 => {
                parts.push(Vec::new());
                continue;
            }
            _ => {}
        }
        parts.last_mut().unwrap().push(t.clone());
    }
    parts
}

fn c_params(toks: &[String]) -> Vec<String> {
    if toks.is_empty() || (toks.len() == 1 && toks[0] == "void") {
        return Vec::new();
    }
    split_commas(toks).iter().map(|p| c_decl(p).1).collect()
}

/// Index of the token closing the bracket opened at `open`.
fn closing(toks: &[String], open: usize) -> usize {
    let mut depth = 0;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t.as_str() {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced brackets");
}

fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim_end_matches(['u', 'U', 'l', 'L']);
    if let Some(hex) = s.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()
    } else {
        s.parse().ok()
    }
}

fn parse_header(header: &str) -> Api {
    let mut api = Api::default();
    let no_comments = strip_c_comments(header);
    // Preprocessor lines: keep numeric #defines, drop the rest.
    let mut code = String::new();
    let mut lines = no_comments.lines();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with('#') {
            let mut full = t.to_string();
            while full.ends_with('\\') {
                full.pop();
                full.push_str(lines.next().unwrap_or(""));
            }
            let words: Vec<&str> = full.trim_start_matches('#').split_whitespace().collect();
            if words.len() == 3 && words[0] == "define" {
                if let Some(v) = parse_int(words[2]) {
                    api.constants.insert(words[1].to_string(), v);
                }
            }
            continue;
        }
        code.push_str(line);
        code.push('\n');
    }

    let toks = tokenize(&code);
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i].as_str();
        if t == "extern" && toks.get(i + 1).is_some_and(|s| s.starts_with('"')) && toks[i + 2] == "{" {
            i += 3; // extern "C" {
            continue;
        }
        if t == "}" {
            i += 1; // end of extern "C"
            continue;
        }
        // A declaration ends at the first `;` outside braces.
        let mut end = i;
        while toks[end] != ";" {
            end = if toks[end] == "{" {
                closing(&toks, end) + 1
            } else {
                end + 1
            };
            assert!(end < toks.len(), "declaration without `;`");
        }
        let decl = &toks[i..end];
        match decl[0].as_str() {
            "typedef" if decl[1] == "enum" => {
                let open = decl.iter().position(|t| t == "{").expect("enum body");
                let close = closing(decl, open);
                let name = decl[close + 1].clone();
                let mut next = 0i64;
                for item in split_commas(&decl[open + 1..close]) {
                    if item.is_empty() {
                        continue; // trailing comma
                    }
                    let value = if item.len() >= 3 && item[1] == "=" {
                        let text = item[2..].join("");
                        parse_int(&text).unwrap_or_else(|| panic!("enum value `{text}` is not a number"))
                    } else {
                        next
                    };
                    api.constants.insert(item[0].clone(), value);
                    next = value + 1;
                }
                api.aliases.insert(name, "c_int".into());
            }
            "typedef" if decl[1] == "struct" => {
                if decl[3] == "{" {
                    let close = closing(decl, 3);
                    let mut fields = Vec::new();
                    for field in decl[4..close].split(|t| t == ";").filter(|f| !f.is_empty()) {
                        fields.push(c_decl(field));
                    }
                    api.structs.insert(decl[close + 1].clone(), Some(fields));
                } else {
                    assert_eq!(decl.len(), 4, "unknown struct typedef {decl:?}");
                    api.structs.insert(decl[3].clone(), None);
                }
            }
            "typedef" if decl.iter().any(|t| t == "(") => {
                // typedef RET (*NAME)(PARAMS);
                let open = decl.iter().position(|t| t == "(").unwrap();
                assert_eq!(decl[open + 1], "*", "unknown typedef {decl:?}");
                let name = decl[open + 2].clone();
                let ret = c_type_to_rust(&decl[1..open]);
                let popen = open + 4;
                let pclose = closing(decl, popen);
                api.fn_types
                    .insert(name, (c_params(&decl[popen + 1..pclose]), ret));
            }
            "typedef" => {
                let (name, ty) = c_decl(&decl[1..]);
                api.aliases.insert(name, ty);
            }
            "LLM_API" => {
                let open = decl.iter().position(|t| t == "(").expect("function parameters");
                let close = closing(decl, open);
                assert_eq!(close, decl.len() - 1, "unknown declaration {decl:?}");
                let name = decl[open - 1].clone();
                let ret = c_type_to_rust(&decl[1..open - 1]);
                api.functions
                    .insert(name, (c_params(&decl[open + 1..close]), ret));
            }
            _ => panic!(
                "tests/header.rs does not understand this declaration of llm.h: {}",
                decl.join(" ")
            ),
        }
        i = end + 1;
    }
    api
}

// ---- sys.rs ----------------------------------------------------------------------

fn norm(ty: &str) -> String {
    let t: String = ty.split_whitespace().collect::<Vec<_>>().join(" ");
    let t = t
        .replace("std::os::raw::", "")
        .replace("core::ffi::", "")
        .replace("std::ffi::", "");
    let t = t.replace("* const", "*const").replace("* mut", "*mut");
    let t = t.replace("< ", "<").replace(" >", ">").replace(",>", ">");
    if t.is_empty() {
        "()".into()
    } else {
        t
    }
}

fn strip_rust_comments(src: &str) -> String {
    src.lines()
        .map(|l| l.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Splits at top-level commas (outside (), [], <>).
fn split_rust(s: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut depth = 0;
    for c in s.chars() {
        match c {
            '(' | '[' | '<' => depth += 1,
            ')' | ']' | '>' if !parts.last().unwrap().ends_with('-') => depth -= 1,
            ',' if depth == 0 => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        parts.last_mut().unwrap().push(c);
    }
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// `(a: T, b: U) -> R` -> ([T, U], R)
fn rust_signature(params: &str, ret: &str) -> (Vec<String>, String) {
    let params = split_rust(params)
        .iter()
        .map(|p| norm(p.split_once(':').expect("parameter without a type").1))
        .collect();
    (params, norm(ret))
}

fn matching_paren(s: &str, open: usize) -> usize {
    let mut depth = 0;
    for (i, c) in s.char_indices().skip(open) {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses");
}

fn parse_sys(src: &str) -> Api {
    let mut api = Api::default();
    let src = strip_rust_comments(src);
    let extern_start = src.find("extern \"C\" {").expect("extern \"C\" block");
    let (items, externs) = src.split_at(extern_start);
    let externs = &externs["extern \"C\" {".len()..externs.rfind('}').unwrap()];
    for decl in externs.split(';').map(str::trim).filter(|d| !d.is_empty()) {
        let decl = decl
            .strip_prefix("pub fn ")
            .unwrap_or_else(|| panic!("unexpected item in extern block: {decl}"));
        let open = decl.find('(').unwrap();
        let close = matching_paren(decl, open);
        let ret = decl[close + 1..].trim().strip_prefix("->").unwrap_or("");
        api.functions.insert(
            decl[..open].trim().to_string(),
            rust_signature(&decl[open + 1..close], ret),
        );
    }
    for item in items.split(';') {
        let item = item.trim();
        if let Some(rest) = item.find("pub const ").map(|p| &item[p + "pub const ".len()..]) {
            let (name, rest) = rest.split_once(':').unwrap();
            let value = rest.split_once('=').unwrap().1.trim();
            api.constants
                .insert(name.trim().to_string(), parse_int(value).expect("constant value"));
        } else if let Some(rest) = item.find("pub type ").map(|p| &item[p + "pub type ".len()..]) {
            let (name, ty) = rest.split_once('=').unwrap();
            let ty = norm(ty);
            if let Some(sig) = ty
                .strip_prefix("Option<unsafe extern \"C\" fn")
                .and_then(|s| s.strip_suffix('>'))
            {
                let close = matching_paren(sig, 0);
                let ret = sig[close + 1..].trim().strip_prefix("->").unwrap_or("");
                api.fn_types
                    .insert(name.trim().to_string(), rust_signature(&sig[1..close], ret));
            } else {
                api.aliases.insert(name.trim().to_string(), ty);
            }
        }
    }
    let mut rest = items;
    while let Some(p) = rest.find("pub struct ") {
        let before = &rest[..p];
        let repr_c = before
            .rfind("#[repr(C)]")
            .is_some_and(|r| !before[r..].contains('}'));
        let after = &rest[p + "pub struct ".len()..];
        let open = after.find('{').unwrap();
        let close = after.find("\n}").unwrap();
        let name = after[..open].trim().to_string();
        assert!(repr_c, "sys.rs: struct {name} is not #[repr(C)]");
        let fields: Vec<(String, String)> = split_rust(&after[open + 1..close])
            .iter()
            .map(|f| {
                let (n, t) = f.split_once(':').unwrap();
                (n.trim().trim_start_matches("pub ").trim().to_string(), norm(t))
            })
            .collect();
        let opaque = fields.iter().all(|(n, _)| n.starts_with('_'));
        api.structs.insert(name, if opaque { None } else { Some(fields) });
        rest = &after[close..];
    }
    api
}

// ---- comparison ------------------------------------------------------------------

fn differences(header: &Api, sys: &Api) -> Vec<String> {
    let mut d = Vec::new();
    let norm_sig = |(p, r): &(Vec<String>, String)| (p.iter().map(|t| norm(t)).collect::<Vec<_>>(), norm(r));
    for (name, sig) in &header.functions {
        match sys.functions.get(name) {
            None => d.push(format!("function {name} is in llm.h but not in sys.rs")),
            Some(s) if norm_sig(s) != norm_sig(sig) => d.push(format!(
                "function {name}: llm.h has ({}) -> {}, sys.rs has ({}) -> {}",
                sig.0.join(", "),
                sig.1,
                s.0.join(", "),
                s.1
            )),
            Some(_) => {}
        }
    }
    for name in sys
        .functions
        .keys()
        .filter(|n| !header.functions.contains_key(*n))
    {
        d.push(format!("function {name} is in sys.rs but not in llm.h"));
    }
    for (name, sig) in &header.fn_types {
        match sys.fn_types.get(name) {
            None => d.push(format!("function type {name} is in llm.h but not in sys.rs")),
            Some(s) if norm_sig(s) != norm_sig(sig) => d.push(format!(
                "function type {name}: llm.h has {sig:?}, sys.rs has {s:?}"
            )),
            Some(_) => {}
        }
    }
    for (name, fields) in &header.structs {
        match (fields, sys.structs.get(name)) {
            (_, None) => d.push(format!("struct {name} is in llm.h but not in sys.rs")),
            (None, Some(None)) => {}
            (Some(h), Some(Some(s))) => {
                let h: Vec<_> = h.iter().map(|(n, t)| (n.clone(), norm(t))).collect();
                if &h != s {
                    d.push(format!("struct {name}: llm.h has fields {h:?}, sys.rs has {s:?}"));
                }
            }
            (h, Some(s)) => d.push(format!(
                "struct {name}: opaque in one of llm.h ({h:?}) and sys.rs ({s:?})"
            )),
        }
    }
    for name in sys.structs.keys().filter(|n| !header.structs.contains_key(*n)) {
        d.push(format!("struct {name} is in sys.rs but not in llm.h"));
    }
    for (name, ty) in &header.aliases {
        match sys.aliases.get(name) {
            None => d.push(format!("type {name} is in llm.h but not in sys.rs")),
            Some(t) if norm(t) != norm(ty) => d.push(format!("type {name}: llm.h has {ty}, sys.rs has {t}")),
            Some(_) => {}
        }
    }
    for (name, value) in &header.constants {
        match sys.constants.get(name) {
            None => d.push(format!("constant {name} is in llm.h but not in sys.rs")),
            Some(v) if v != value => d.push(format!("constant {name}: llm.h has {value}, sys.rs has {v}")),
            Some(_) => {}
        }
    }
    for name in sys
        .constants
        .keys()
        .filter(|n| !header.constants.contains_key(*n))
    {
        d.push(format!("constant {name} is in sys.rs but not in llm.h"));
    }
    d
}

#[test]
fn sys_rs_matches_llm_h() {
    let header = parse_header(HEADER);
    let sys = parse_sys(SYS_RS);
    // The parsers must have seen the API, not an empty file.
    assert!(
        header.functions.len() >= 25,
        "parsed only {} functions from llm.h",
        header.functions.len()
    );
    assert!(header.functions.contains_key("llm_generate"));
    assert!(header.structs.contains_key("llm_generate_params"));
    assert_eq!(header.constants.get("LLM_MAX_STOP_STRINGS"), Some(&8));
    let d = differences(&header, &sys);
    assert!(
        d.is_empty(),
        "src/sys.rs does not match include/llm.h:\n  {}",
        d.join("\n  ")
    );
    println!(
        "llm.h: {} functions, {} structs, {} constants - all match sys.rs",
        header.functions.len(),
        header.structs.len(),
        header.constants.len()
    );
}

/// The check itself catches what it is meant to catch.
#[test]
fn header_check_detects_changes() {
    let sys = parse_sys(SYS_RS);
    let added = format!("{HEADER}\nLLM_API int llm_new_function(const llm_model *model, int x);\n");
    let d = differences(&parse_header(&added), &sys);
    assert!(d.iter().any(|m| m.contains("llm_new_function")), "{d:?}");

    let changed = HEADER.replacen(
        "llm_session_eval(llm_session *session, const llm_token *tokens, size_t n)",
        "llm_session_eval(llm_session *session, const llm_token *tokens, int32_t n)",
        1,
    );
    assert_ne!(changed, HEADER, "test pattern not found in llm.h");
    let d = differences(&parse_header(&changed), &sys);
    assert!(d.iter().any(|m| m.contains("llm_session_eval")), "{d:?}");

    let field = HEADER.replacen(
        "  int32_t n_batch;\n  /* Non-zero",
        "  int32_t n_batch;\n  int32_t n_new;\n  /* Non-zero",
        1,
    );
    assert_ne!(field, HEADER, "test pattern not found in llm.h");
    let d = differences(&parse_header(&field), &sys);
    assert!(d.iter().any(|m| m.contains("llm_session_params")), "{d:?}");

    let header = parse_header(HEADER);
    let wrong_type = SYS_RS.replacen("pub memory_limit: u64,", "pub memory_limit: usize,", 1);
    assert_ne!(wrong_type, SYS_RS, "test pattern not found in sys.rs");
    let d = differences(&header, &parse_sys(&wrong_type));
    assert!(d.iter().any(|m| m.contains("llm_session_params")), "{d:?}");
    let wrong_ret = SYS_RS.replacen(
        "pub fn llm_api_version() -> c_int;",
        "pub fn llm_api_version();",
        1,
    );
    assert_ne!(wrong_ret, SYS_RS, "test pattern not found in sys.rs");
    let d = differences(&header, &parse_sys(&wrong_ret));
    assert!(d.iter().any(|m| m.contains("llm_api_version")), "{d:?}");

    let value = HEADER.replacen("LLM_ERR_INTERNAL = 10", "LLM_ERR_INTERNAL = 11", 1);
    let d = differences(&parse_header(&value), &sys);
    assert!(d.iter().any(|m| m.contains("LLM_ERR_INTERNAL")), "{d:?}");
}

#[test]
fn library_is_at_least_the_header_version() {
    assert!(
        libllm::api_version() >= libllm::sys::LLM_API_VERSION,
        "the linked libllm has API version {}, these bindings need {}",
        libllm::api_version(),
        libllm::sys::LLM_API_VERSION
    );
    assert!(!libllm::version().is_empty());
}
