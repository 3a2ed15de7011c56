//! The Dockerfile front end on mutated Dockerfiles, in a plain loop: every input gives a graph
//! or an error, never a panic. Long run:
//! `RCROSS_FUZZ_ITERS=500000 cargo test --release --test dockerfile_fuzz_loop`.

#[path = "common/mutate.rs"]
mod mutate;
mod prereq;

use rcross::dockerfile::{plan, BuildOptions};

/// Inputs are cut to this many bytes: the front end's cost grows with the text, and the
/// interesting structure fits well within it.
const MAX_INPUT: usize = 16 << 10;

const SEEDS: &[&str] = &[
    "# syntax=docker/dockerfile:1\nARG BASE=img TAG=1\nFROM --platform=$BUILDPLATFORM ${BASE}:${TAG:-2} AS build\nARG TARGETARCH TARGETOS\nENV GOOS=$TARGETOS GOARCH=${TARGETARCH}\nWORKDIR /src\nRUN --mount=type=cache,target=/root/.cache,id=go-$TARGETARCH \\\n    --mount=type=bind,from=busybox,source=/x,target=/y \\\n  go build -o /out/app .\nFROM scratch\nCOPY --from=build --chown=1:1 --chmod=0755 /out/app /app\nEXPOSE 80 53/udp\nUSER 1000:1000\nENTRYPOINT [\"/app\"]\nCMD [\"--help\"]\n",
    "# escape=`\nFROM img AS a\nRUN dir c:\\ `\n  && echo x\nLABEL \"a b\"='c d' e=f\nHEALTHCHECK --interval=30s --retries=3 CMD curl -f http://localhost/ || exit 1\nSTOPSIGNAL SIGTERM\nSHELL [\"/bin/bash\", \"-c\"]\nONBUILD RUN echo $X\nVOLUME /data [\"/x\"]\nMAINTAINER someone\n",
    "FROM img\nRUN a \\\n && cat <<EOF > /x\nhello ${A:-b}\nEOF\nRUN python3 <<-\"PY\" && <<A cat\n\tprint(1)\n\tPY\na\nA\nCOPY <<EOF <<'RAW' /dst/\n$HOME\nEOF\n$X\nRAW\nADD --link a.tar /\nENV A=1 B=\"${A}2\" C=${B:+x}\nARG V=${A:?set}\n",
    "ARG A\nFROM scratch AS Base\nFROM base AS b2\nARG A=${A#x}\nCOPY --from=b2 / /\nRUN --network=none --mount=type=secret,id=tok,env=TOKEN --mount=type=tmpfs,target=/t,size=1g true\nWORKDIR ../a/./b\nUSER ${U:-nobody}\n",
];

fn one(input: &[u8]) {
    let input = &input[..input.len().min(MAX_INPUT)];
    let text = String::from_utf8_lossy(input);
    for (target, stage) in [("linux/arm/v7", None), ("linux/amd64", Some("base"))] {
        let mut options = BuildOptions::new(
            target.parse().expect("platform"),
            "linux/amd64".parse().expect("platform"),
        );
        options.target = stage.map(str::to_string);
        options.build_args.insert("A".into(), "1".into());
        let _ = plan("Dockerfile", &text, &options);
    }
}

#[test]
fn front_end_survives_mutated_dockerfiles() {
    for s in SEEDS {
        let o = BuildOptions::new(
            "linux/arm64".parse().expect("platform"),
            "linux/amd64".parse().expect("platform"),
        );
        // The seeds themselves are mostly valid (the last one uses a refused pattern form).
        let r = plan("seed", s, &o);
        assert!(r.is_ok() || s.contains("${A#x}"), "{r:?}");
    }
    let seeds: Vec<Vec<u8>> = SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect();
    mutate::run_loop("dockerfile_plan", &seeds, 20_000, one);
}
