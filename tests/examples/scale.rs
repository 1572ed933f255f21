//! The scale model of one cluster at full size (1,000 origins, 100 regions × 50 edges,
//! 100,000 streams): computes it with the cluster's own algorithms (`skein_tests::scale`) and
//! prints the tables of `docs/scale.md` as Markdown.
//!
//! Usage: `cargo run --release -p skein-tests --example scale [full|small]` (default `full`).

use std::time::Instant;

use skein_tests::scale::{Model, Size};

fn main() {
    let size = match std::env::args().nth(1).as_deref() {
        None | Some("full") => Size::full(),
        Some("small") => Size::small(),
        Some(other) => {
            eprintln!("unknown size {other:?}: expected full or small");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let model = Model::build(&size).unwrap_or_else(|e| {
        eprintln!("scale model: {e}");
        std::process::exit(2);
    });
    let built = started.elapsed();
    let report = model.report();
    println!("{}", report.markdown());
    println!(
        "Computed in {:.1} s (cluster formed and viewers placed in {:.1} s).",
        started.elapsed().as_secs_f64(),
        built.as_secs_f64()
    );
}
