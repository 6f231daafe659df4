// scratch: not committed
use postern_core::spam::bayes::{Class, Classifier};
use postern_core::spam::{analyze, report, AuthInput};
use std::path::PathBuf;
fn main() {
    let data = PathBuf::from("/tmp/postern-spam-corpus/package/data");
    let mut v: Vec<(PathBuf, bool)> = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        let spam = d
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("spam"));
        let mut f: Vec<PathBuf> = std::fs::read_dir(&d)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        f.sort();
        v.extend(f.into_iter().map(|p| (p, spam)));
    }
    let seed: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(14);
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    for i in (1..v.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    let mut c = Classifier::new();
    for (i, (p, spam)) in v.iter().enumerate() {
        let raw = std::fs::read(p).unwrap();
        let a = analyze(&raw);
        let r = report(&a, &AuthInput::default(), Some(&c));
        let rules: Vec<String> = r.rules.iter().map(|(n, x)| format!("{n}={x:.2}")).collect();
        println!(
            "{}\t{}\t{:.3}\t{}\t{}",
            i + 1,
            if *spam { "S" } else { "H" },
            r.score,
            p.strip_prefix(&data).unwrap().display(),
            rules.join(",")
        );
        c.learn(
            a.key,
            &a.tokens,
            if *spam { Class::Spam } else { Class::Ham },
        );
    }
}
