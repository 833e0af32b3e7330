//! `cargo run -p waysock-protogen`: rewrites waysock-bridge's protocol tables from the XML of
//! the pinned Smithay protocol crates (see the library's documentation).

fn main() {
    let root = waysock_protogen::workspace_root();
    let result = waysock_protogen::locate(&root).and_then(|s| waysock_protogen::generate(&s));
    match result {
        Ok(table) => {
            let path = root.join(waysock_protogen::TABLE_PATH);
            if let Err(e) = std::fs::write(&path, table) {
                eprintln!("waysock-protogen: writing {}: {e}", path.display());
                std::process::exit(1);
            }
            eprintln!("waysock-protogen: wrote {}", path.display());
        }
        Err(e) => {
            eprintln!("waysock-protogen: {e}");
            std::process::exit(1);
        }
    }
}
