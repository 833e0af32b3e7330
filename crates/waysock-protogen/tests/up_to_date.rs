//! The checked-in tables are exactly what the generator makes from the pinned XML sources.

#[test]
fn regenerating_changes_nothing() {
    let root = waysock_protogen::workspace_root();
    let sources = waysock_protogen::locate(&root).expect("locating the XML crates");
    let fresh = waysock_protogen::generate(&sources).expect("generating the tables");
    let path = root.join(waysock_protogen::TABLE_PATH);
    let current = std::fs::read_to_string(&path).expect("reading the checked-in tables");
    if current != fresh {
        let line = current
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .map_or(current.lines().count().min(fresh.lines().count()), |n| n);
        panic!(
            "{} is not what the generator makes (first difference at line {}); run \
             `cargo run -p waysock-protogen` and commit the result",
            path.display(),
            line + 1
        );
    }
}
