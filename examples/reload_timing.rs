//! Time what a reload does with a config — parse, validate and compile, render warnings:
//! `cargo run --release --example reload_timing -- CONFIG [N]`.
fn ms(t: std::time::Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = std::path::PathBuf::from(args.next().expect("config path"));
    let n: usize = args.next().map_or(5, |s| s.parse().unwrap());
    for _ in 0..n {
        let t = std::time::Instant::now();
        let (cfg, src) = ords_guard::config::read(&path).unwrap_or_else(|e| panic!("{e}"));
        let parsed = ms(t);
        let c = ords_guard::registry::compile(&cfg, &src).unwrap_or_else(|e| panic!("{e:?}"));
        let compiled = ms(t);
        let w = src.render_all(&c.warnings);
        let rendered = ms(t);
        drop((c, cfg));
        println!("parse {parsed:.1} ms, compile {:.1} ms, warnings {:.1} ms ({} warnings), drop {:.1} ms: total {:.1} ms", compiled - parsed, rendered - compiled, w.len(), ms(t) - rendered, ms(t));
    }
}
