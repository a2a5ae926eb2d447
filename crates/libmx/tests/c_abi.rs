//! The C ABI seen from C: gcc-built programs (`tests/c/*.c`) compiled
//! against our headers (`include/`) and linked against the cdylib that
//! `cargo test -p libmx` builds next to this test executable
//! (`target/<profile>/deps/liblibmx.so`), plus checks of the exported
//! dynamic symbols. Needs gcc, g++ and readelf (binutils).

#[path = "common/cbuild.rs"]
mod cbuild;

use cbuild::{assert_ok, c_source, cdylib, include_dir, text, CScratch, LINK_NAMES};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");
const TMP: &str = env!("CARGO_TARGET_TMPDIR");

/// Symbols carrying a version in the reference library.
const VERSIONED: &[(&str, &str)] = &[
    ("mx_open_endpoint", "MX_0.9"),
    ("mx_decompose_endpoint_addr", "MX_0.9"),
    ("mx_get_info", "MX_0.91"),
    ("mx_test", "MX_0.91"),
    ("mx_wait", "MX_0.91"),
    ("mx_iprobe", "MX_0.91"),
    ("mx__init_api", "MX_0.92"),
];

/// Every function of the MX ABI (section 4 of the spec + MPI-probed ones).
const ALL_FUNCTIONS: &[&str] = &[
    "mx__init_api",
    "mx_finalize",
    "mx_set_error_handler",
    "mx_open_endpoint",
    "mx_close_endpoint",
    "mx_wakeup",
    "mx_disable_progression",
    "mx_reenable_progression",
    "mx_progress",
    "mx_isend",
    "mx_issend",
    "mx_irecv",
    "mx_cancel",
    "mx_forget",
    "mx_test",
    "mx_wait",
    "mx_test_any",
    "mx_wait_any",
    "mx_ipeek",
    "mx_peek",
    "mx_iprobe",
    "mx_probe",
    "mx_ibuffered",
    "mx_context",
    "mx_get_info",
    "mx_hostname_to_nic_id",
    "mx_board_number_to_nic_id",
    "mx_nic_id_to_board_number",
    "mx_nic_id_to_hostname",
    "mx_connect",
    "mx_iconnect",
    "mx_disconnect",
    "mx_decompose_endpoint_addr",
    "mx_decompose_endpoint_addr2",
    "mx_get_endpoint_addr",
    "mx_set_endpoint_addr_context",
    "mx_get_endpoint_addr_context",
    "mx_set_request_timeout",
    "mx_register_unexp_handler",
    "mx_strerror",
    "mx_strstatus",
    "mx_raw_open_endpoint",
    "mx_raw_close_endpoint",
    "mx_raw_send",
    "mx_raw_next_event",
    "mx_raw_set_route",
    "mx_raw_set_route_mag",
    "mx_raw_set_route_begin",
    "mx_raw_set_route_end",
    "mx_raw_clear_routes",
    "mx_raw_set_map_version",
    "mx_raw_num_ports",
    "mx_raw_line_speed",
    "mx_raw_set_hostname",
    "mx_raw_set_peer_name",
    "mx_raw_handle",
    "mx_register_unexp_callback",
    "mx_iput",
    "mx_iget",
    "mx_buffered",
    "mx_open_board",
    "mx__get_mapper_state",
    "mx__regcache_clean",
];

/// Functions implemented without the engine (must exist already).
const PURE_FUNCTIONS: &[&str] = &[
    "mx__init_api",
    "mx_finalize",
    "mx_set_error_handler",
    "mx_strerror",
    "mx_strstatus",
    "mx_register_unexp_callback",
    "mx_iput",
    "mx_iget",
    "mx_buffered",
    "mx_open_board",
    "mx__regcache_clean",
];

/// A per-test scratch directory with `lib/` holding every name our library
/// is installed under (symlinks to the cdylib).
struct Scratch(CScratch);

impl std::ops::Deref for Scratch {
    type Target = CScratch;
    fn deref(&self) -> &CScratch {
        &self.0
    }
}

impl Scratch {
    fn new(test: &str) -> Scratch {
        let names = [LINK_NAMES, &["libopen-mx.so.0"]].concat();
        Scratch(CScratch::fresh(
            Path::new(TMP).join("c_abi").join(test),
            &names,
        ))
    }

    /// Compile and link `tests/c/<src>` against our library.
    fn build(&self, src: &str, std: &str) -> PathBuf {
        let std = format!("-std={std}");
        let flags = [std.as_str(), "-Wall", "-Wextra", "-pedantic", "-Werror"];
        self.0.build(src.trim_end_matches(".c"), &flags)
    }

    fn run(&self, exe: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(exe);
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run test program")
    }
}

#[test]
fn headers_compile_as_c99_and_cxx() {
    let s = Scratch::new("headers");
    let src = s.dir.join("all.c");
    std::fs::write(
        &src,
        "#include <myriexpress.h>\n#include <mx_extensions.h>\n#include <mx_io.h>\n\
         #include <mx_raw.h>\n#include <myriexpress.h>\n#include <mx_raw.h>\n\
         int main(void) { return (int)MX_U32((uint64_t)1) + (int)MX_L32(0); }\n",
    )
    .unwrap();
    for h in ["myriexpress.h", "mx_extensions.h", "mx_io.h", "mx_raw.h"] {
        let one = s.dir.join(format!("one_{h}.c"));
        std::fs::write(&one, format!("#include <{h}>\nint x;\n")).unwrap();
        let out = Command::new("gcc")
            .args([
                "-std=c99",
                "-Wall",
                "-Wextra",
                "-pedantic",
                "-Werror",
                "-c",
                "-o",
            ])
            .arg(s.dir.join("one.o"))
            .arg("-I")
            .arg(include_dir())
            .arg(&one)
            .output()
            .expect("gcc");
        assert_ok(&out, &format!("gcc -std=c99 {h} alone"));
    }
    for (cc, std) in [
        ("gcc", "-std=c99"),
        ("gcc", "-std=c11"),
        ("g++", "-std=c++98"),
        ("g++", "-std=c++17"),
    ] {
        let mut cmd = Command::new(cc);
        if cc == "g++" {
            if Command::new("g++").arg("--version").output().is_err() {
                eprintln!("g++ not installed: C++ check of the headers skipped");
                continue;
            }
            cmd.args(["-x", "c++"]);
        }
        let out = cmd
            .args([std, "-Wall", "-Wextra", "-pedantic", "-Werror", "-c", "-o"])
            .arg(s.dir.join("all.o"))
            .arg("-I")
            .arg(include_dir())
            .arg(&src)
            .output()
            .expect("compiler");
        assert_ok(&out, &format!("{cc} {std}"));
    }
}

#[test]
fn layout_matches_the_abi() {
    let s = Scratch::new("layout");
    let exe = s.build("layout.c", "c11");
    let out = s.run(&exe, &[], &[]);
    assert_ok(&out, "layout");
    assert!(text(&out.stdout).contains("layout: ok"));
}

#[test]
fn init_handlers_and_strings() {
    let s = Scratch::new("strings_init");
    let exe = s.build("strings_init.c", "c99");
    let out = s.run(&exe, &["main"], &[]);
    assert_ok(&out, "strings_init main");
    assert!(text(&out.stdout).contains("strings_init: ok"));
    assert!(out.stderr.is_empty(), "stderr: {}", text(&out.stderr));
}

#[test]
fn default_handler_after_init_is_fatal() {
    let s = Scratch::new("fatal_after");
    let exe = s.build("strings_init.c", "c99");
    let out = s.run(&exe, &["fatal-after-init"], &[]);
    assert!(!out.status.success(), "must exit: {}", text(&out.stdout));
    assert!(!text(&out.stdout).contains("survived"));
    let err = text(&out.stderr);
    assert!(
        err.contains("mx_iput") && err.contains(": Failure"),
        "stderr: {err}"
    );
    // Any value but 0 keeps the fatal default.
    let out = s.run(&exe, &["fatal-after-init"], &[("MX_ERRORS_ARE_FATAL", "1")]);
    assert!(!out.status.success());
}

#[test]
fn handler_before_init_is_fatal() {
    let s = Scratch::new("fatal_before");
    let exe = s.build("strings_init.c", "c99");
    let out = s.run(&exe, &["fatal-before-init"], &[]);
    assert!(!out.status.success());
    assert!(!text(&out.stdout).contains("survived"));
    let err = text(&out.stderr);
    assert!(err.contains("0x200"), "stderr: {err}");
    // Even MX_ERRORS_ARE_FATAL=0 applies only from mx_init on.
    let out = s.run(
        &exe,
        &["fatal-before-init"],
        &[("MX_ERRORS_ARE_FATAL", "0")],
    );
    assert!(!out.status.success());
}

#[test]
fn env_makes_errors_return() {
    let s = Scratch::new("env_return");
    let exe = s.build("strings_init.c", "c99");
    let out = s.run(&exe, &["env-return"], &[("MX_ERRORS_ARE_FATAL", "0")]);
    assert_ok(&out, "env-return");
    assert!(text(&out.stdout).contains("mx_iput returned 2"));
}

/// A program linked against a stand-in of the reference library (same
/// symbol versions, soname `libopen-mx.so.0` or `libmyriexpress.so`) runs on
/// ours: the versioned reference `mx__init_api@MX_0.92` must resolve.
#[test]
fn binary_linked_against_reference_runs() {
    for soname in ["libopen-mx.so.0", "libmyriexpress.so"] {
        let s = Scratch::new(&format!("reference_{soname}"));
        let stub_dir = s.dir.join("stub");
        std::fs::create_dir_all(&stub_dir).unwrap();
        let stub = stub_dir.join(soname);
        let out = Command::new("gcc")
            .args(["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror"])
            .args(["-shared", "-fPIC", "-I"])
            .arg(include_dir())
            .arg(c_source("refstub.c"))
            .arg(format!(
                "-Wl,--version-script={}",
                Path::new(MANIFEST).join("mx.map").display()
            ))
            .arg(format!("-Wl,-soname,{soname}"))
            .arg("-o")
            .arg(&stub)
            .output()
            .expect("gcc");
        assert_ok(&out, "build reference stub");
        let exe = s.dir.join("refprog");
        let out = Command::new("gcc")
            .args(["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-I"])
            .arg(include_dir())
            .arg(c_source("refprog.c"))
            .arg(&stub)
            .arg("-o")
            .arg(&exe)
            .output()
            .expect("gcc");
        assert_ok(&out, "link refprog against the stub");
        let syms = readelf(&["--dyn-syms", "-W"], &exe);
        assert!(
            syms.contains("mx__init_api@MX_0.92"),
            "refprog must need the versioned symbol:\n{syms}"
        );
        let out = s.run(&exe, &[], &[]);
        assert_ok(&out, &format!("refprog ({soname}) on our library"));
        assert!(text(&out.stdout).contains("refprog: ok"));
    }
}

fn readelf(args: &[&str], file: &Path) -> String {
    let out = Command::new("readelf")
        .args(args)
        .arg(file)
        .output()
        .expect("run readelf");
    assert_ok(&out, "readelf");
    text(&out.stdout)
}

#[derive(Debug)]
struct DynSym {
    kind: String,
    size: u64,
    version: Option<String>,
}

/// Defined global dynamic symbols: name -> (type, size, `@@` version).
fn exported_symbols(so: &Path) -> BTreeMap<String, DynSym> {
    let mut map = BTreeMap::new();
    for line in readelf(&["--dyn-syms", "-W"], so).lines() {
        // Num: Value Size Type Bind Vis Ndx Name
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || !f[0].ends_with(':') || f[6] == "UND" || f[6] == "Ndx" {
            continue;
        }
        if f[4] != "GLOBAL" && f[4] != "WEAK" {
            continue;
        }
        let (name, version) = match f[7].split_once("@@") {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => match f[7].split_once('@') {
                Some((n, v)) => (n.to_owned(), Some(format!("(hidden){v}"))),
                None => (f[7].to_owned(), None),
            },
        };
        let size = f[2].parse().unwrap_or(0);
        map.insert(
            name,
            DynSym {
                kind: f[3].to_owned(),
                size,
                version,
            },
        );
    }
    map
}

#[test]
fn exported_symbols_soname_and_versions() {
    let so = cdylib();
    let dynamic = readelf(&["-d"], &so);
    assert!(
        dynamic.contains("Library soname: [libmyriexpress.so.0]"),
        "{dynamic}"
    );

    let syms = exported_symbols(&so);
    // Only the MX API is exported: no Rust internals, mangled or not.
    let strays: Vec<&String> = syms
        .keys()
        .filter(|n| !(n.starts_with("mx_") || n.starts_with("MX_")))
        .collect();
    assert!(strays.is_empty(), "unexpected exports: {strays:?}");

    for obj in ["MX_ERRORS_ARE_FATAL", "MX_ERRORS_RETURN"] {
        let s = syms
            .get(obj)
            .unwrap_or_else(|| panic!("{obj} not exported"));
        assert_eq!(s.kind, "OBJECT", "{obj}");
        assert_eq!(s.size, 8, "{obj}");
        assert_eq!(s.version, None, "{obj}");
    }
    for f in PURE_FUNCTIONS {
        let s = syms.get(*f).unwrap_or_else(|| panic!("{f} not exported"));
        assert_eq!(s.kind, "FUNC", "{f}");
    }

    // Versioned symbols that exist carry their version; nothing else does.
    let versioned: BTreeMap<&str, &str> = VERSIONED.iter().copied().collect();
    for (name, s) in &syms {
        let want = versioned.get(name.as_str()).map(|v| v.to_string());
        assert_eq!(s.version, want, "version of {name}");
    }
    assert!(syms.contains_key("mx__init_api"));

    let defs = readelf(&["-V"], &so);
    for node in ["MX_0.0", "MX_0.9", "MX_0.91", "MX_0.92"] {
        assert!(
            defs.contains(&format!("Name: {node}\n")) || defs.contains(&format!("Name: {node} ")),
            "version node {node} not defined:\n{defs}"
        );
    }
}

/// Every function of the ABI is exported (versioned ones with their
/// versions, checked above).
#[test]
fn every_abi_function_is_exported() {
    let syms = exported_symbols(&cdylib());
    let missing: Vec<&&str> = ALL_FUNCTIONS
        .iter()
        .filter(|f| !syms.contains_key(**f))
        .collect();
    assert!(missing.is_empty(), "missing exports: {missing:?}");
    for (name, _) in VERSIONED {
        assert!(syms.contains_key(*name), "{name}");
    }
}

/// One line of `tests/c/openmx_decls.txt`.
struct RefDecl {
    header: String,
    kind: String,
    name: String,
    version: Option<String>,
    value: Option<String>,
}

fn reference_decls() -> Vec<RefDecl> {
    let list =
        std::fs::read_to_string(c_source("openmx_decls.txt")).expect("read openmx_decls.txt");
    let mut decls = Vec::new();
    for (n, line) in list.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 5, "openmx_decls.txt:{}: {line}", n + 1);
        let opt = |s: &str| (s != "-").then(|| s.to_owned());
        decls.push(RefDecl {
            header: f[0].to_owned(),
            kind: f[1].to_owned(),
            name: f[2].to_owned(),
            version: opt(f[3]),
            value: opt(f[4]),
        });
    }
    decls
}

/// Every function, object, macro, constant and type that Open-MX's headers
/// declare is declared by ours (in the same header, with the same value or
/// size), and every function and object is exported by our library with
/// the symbol version the reference gives it.
#[test]
fn every_reference_declaration_exists() {
    let decls = reference_decls();
    assert!(decls.len() > 200, "the list lost lines: {}", decls.len());
    let s = Scratch::new("reference_decls");
    // One file per header: the name must come from that header (or one it
    // includes, as the reference's do).
    let mut headers: Vec<&str> = decls.iter().map(|d| d.header.as_str()).collect();
    headers.sort_unstable();
    headers.dedup();
    for h in headers {
        let mut c = format!(
            "#include <stdio.h>\n#include <string.h>\n#include <{h}>\n\
             typedef void (*any_fn)(void);\nstatic int bad;\n\
             static void check(const char *name, unsigned long long got, unsigned long long want) {{\n\
             \tif (got != want) {{ printf(\"%s: %llu, want %llu\\n\", name, got, want); bad = 1; }}\n}}\n"
        );
        let mut fns = Vec::new();
        let mut body = String::new();
        for d in decls.iter().filter(|d| d.header == h) {
            let n = &d.name;
            match d.kind.as_str() {
                "func" => fns.push(format!("(any_fn){n}")),
                "data" => body.push_str(&format!("\tcheck(\"{n}\", {n} != NULL, 1);\n")),
                "guard" | "flag" => {
                    c.push_str(&format!("#ifndef {n}\n#error {n} not defined\n#endif\n"))
                }
                "macro" => c.push_str(&format!(
                    "#ifndef {n}\n#error macro {n} not defined\n#endif\n"
                )),
                "const" => {
                    let v = d.value.as_deref().expect("const without value");
                    body.push_str(&format!(
                        "\tcheck(\"{n}\", (unsigned long long)({n}), {v}ULL);\n"
                    ));
                }
                "type" => {
                    let v = d.value.as_deref().expect("type without size");
                    body.push_str(&format!("\tcheck(\"sizeof({n})\", sizeof({n}), {v}ULL);\n"));
                }
                k => panic!("openmx_decls.txt: unknown kind {k} for {n}"),
            }
        }
        if h == "myriexpress.h" {
            // The function-like macros, used as programs use them.
            body.push_str(
                "\tcheck(\"MX_U32\", MX_U32((uint64_t)0x1234567800000000ULL), 0x12345678ULL);\n",
            );
            body.push_str(
                "\tcheck(\"MX_L32\", MX_L32((uint64_t)0x12345678abcdef01ULL), 0xabcdef01ULL);\n",
            );
            body.push_str("\t{ mx_return_t (*init)(int) = mx__init_api; (void)init; (void)sizeof(mx_init()); }\n");
        }
        // Every function's address, kept where the compiler cannot drop it.
        let loop_ = if fns.is_empty() {
            String::new()
        } else {
            c.push_str(&format!(
                "static any_fn const fns[] = {{ {} }};\n",
                fns.join(", ")
            ));
            "\tfor (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)\n\
             \t\tif (fns[i] == NULL) bad = 1;\n"
                .to_owned()
        };
        c.push_str(&format!(
            "int main(void) {{\n{body}{loop_}\
             \tif (!bad) printf(\"decls: ok\\n\");\n\treturn bad;\n}}\n"
        ));
        let stem = h.trim_end_matches(".h");
        let src = s.dir.join(format!("decls_{stem}.c"));
        std::fs::write(&src, c).unwrap();
        let exe = s.dir.join(format!("decls_{stem}"));
        s.gcc(&["-std=c99", "-Wall", "-Wextra", "-Werror"], &src, &exe);
        let out = s.run(&exe, &[], &[]);
        assert_ok(&out, &format!("values of {h}"));
        assert!(text(&out.stdout).contains("decls: ok"));
    }

    let syms = exported_symbols(&cdylib());
    let mut wrong = Vec::new();
    for d in decls
        .iter()
        .filter(|d| d.kind == "func" || d.kind == "data")
    {
        match syms.get(&d.name) {
            None => wrong.push(format!("{} not exported", d.name)),
            Some(s) if s.version != d.version => wrong.push(format!(
                "{} exported with version {:?}, want {:?}",
                d.name, s.version, d.version
            )),
            Some(s) if s.kind != if d.kind == "func" { "FUNC" } else { "OBJECT" } => {
                wrong.push(format!("{} exported as {}", d.name, s.kind))
            }
            Some(_) => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "exports differ from the reference:\n{}",
        wrong.join("\n")
    );
}
