// The store's migrations are embedded at compile time (refinery's
// `embed_migrations!`): rebuild when one is added or changed.
fn main() {
    println!("cargo:rerun-if-changed=src/store/migrations");
    // The desktop's files are embedded by `include_dir!` (src/http/webui.rs),
    // which cannot tell cargo about them on stable: rebuild when any file
    // under the folder is added, changed or removed.
    println!("cargo:rerun-if-changed=assets/desk");
}
