//! `polis-viewer`: the planners' 3D viewer (see the crate's library docs).

fn main() -> std::process::ExitCode {
    polis_viewer::run()
}
