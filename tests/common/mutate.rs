//! A small deterministic mutation fuzzer for stable Rust: the cargo-fuzz targets' bodies run in
//! a loop over mutated seeds. `RCROSS_FUZZ_ITERS` sets the iteration count (default small, so it
//! runs in every `cargo test`), `RCROSS_FUZZ_SEED` the starting seed.

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    u64::MAX,
    512,
    4096,
    52,
    64,
    56,
    32,
];

/// One to eight mutations of `data`.
pub fn mutate(rng: &mut Rng, seed: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        let len = d.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                d[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                d[i] = rng.next() as u8;
            }
            2 if len > 8 => {
                // An interesting integer, 2/4/8 bytes, either endianness, mostly in the headers.
                let w = [2usize, 4, 8][rng.below(3)];
                let lim = if rng.below(2) == 0 { len.min(512) } else { len };
                let i = rng.below(lim.saturating_sub(w).max(1));
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let bytes = if rng.below(2) == 0 {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                let end = (i + w).min(len);
                d[i..end].copy_from_slice(&bytes[..end - i]);
            }
            3 => d.truncate(rng.below(len + 1)),
            4 if len > 0 => {
                // Duplicate a chunk somewhere else.
                let a = rng.below(len);
                let n = rng.below((len - a).min(1024) + 1);
                let chunk = d[a..a + n].to_vec();
                let at = rng.below(d.len() + 1);
                d.splice(at..at, chunk);
            }
            5 => {
                let at = rng.below(len + 1);
                let n = rng.below(64);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                d.splice(at..at, bytes);
            }
            6 if len > 0 => {
                let a = rng.below(len);
                let n = rng.below((len - a).min(512) + 1);
                d.drain(a..a + n);
            }
            7 if !pool.is_empty() => {
                // Splice with another seed.
                let other = &pool[rng.below(pool.len())];
                let cut = rng.below(d.len() + 1);
                let from = rng.below(other.len() + 1);
                d.truncate(cut);
                d.extend_from_slice(&other[from..]);
            }
            _ => {
                // Octal text (tar numbers).
                if len > 12 {
                    let i = rng.below(len - 12);
                    let v = INTERESTING[rng.below(INTERESTING.len())];
                    let s = format!("{v:011o}");
                    let n = s.len().min(11);
                    d[i..i + n].copy_from_slice(&s.as_bytes()[..n]);
                }
            }
        }
    }
    d
}

/// `RCROSS_FUZZ_ITERS`, else `default`. A value that is not a positive number fails the test: a
/// typo must not turn the loop into zero iterations that pass.
pub fn iterations(default: u64) -> u64 {
    let iters = match std::env::var("RCROSS_FUZZ_ITERS") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("RCROSS_FUZZ_ITERS={s:?} is not a number: {e}")),
        Err(_) => default,
    };
    assert!(iters > 0, "RCROSS_FUZZ_ITERS=0 would run no mutated input");
    iters
}

/// Run `body` on `iters` mutations of the seeds; prints the count.
pub fn run_loop(name: &str, seeds: &[Vec<u8>], default_iters: u64, body: fn(&[u8])) {
    let iters = iterations(default_iters);
    let seed: u64 = match std::env::var("RCROSS_FUZZ_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("RCROSS_FUZZ_SEED={s:?} is not a number: {e}")),
        Err(_) => 1,
    };
    assert!(
        !seeds.is_empty(),
        "{name}: no seed inputs, nothing to mutate"
    );
    let mut rng = Rng::new(seed);
    for s in seeds {
        body(s);
    }
    let mut current = seeds[0].clone();
    for i in 0..iters {
        // Mostly mutate a seed, sometimes keep stacking on the last input.
        let base = if rng.below(4) == 0 {
            current.clone()
        } else {
            seeds[rng.below(seeds.len())].clone()
        };
        let input = mutate(&mut rng, &base, seeds);
        body(&input);
        if i % 16 == 0 {
            current = input;
        }
    }
    eprintln!("{name}: {iters} mutated inputs (seed {seed}), no panic");
}
