//! gzip on every core, pigz style, with output that does not depend on the number of cores.
//!
//! The uncompressed stream is cut into fixed [`GZIP_BLOCK_SIZE`] blocks. Each block is deflated
//! on its own, primed with the last 32 KiB of the block before it as dictionary (so matches
//! reach back across the cut, as in pigz), and ends with a sync flush, which leaves it
//! byte-aligned, so the blocks can be concatenated in order into one deflate stream; a final empty block, the
//! combined CRC-32 and the length close the gzip member. Because the cut points are fixed, one
//! thread and sixty-four threads write the same bytes.
//!
//! Incompressible blocks take a cheap path: a 64 KiB sample is deflated at level 1 first, and
//! when it does not shrink the block is stored (5 bytes of framing per 64 KiB) instead of being
//! run through the full compressor. A block whose deflate output would be larger than storing it
//! is stored as well.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use flate2::{Compress, FlushCompress};

use super::error::OciError;

/// Size of the independently compressed blocks. Part of the output format: changing it changes
/// every gzip layer digest.
pub const GZIP_BLOCK_SIZE: usize = 1024 * 1024;
/// Size of the sample that decides whether a block is worth compressing.
const SAMPLE_SIZE: usize = 64 * 1024;
/// deflate's window: how much of the previous block primes the next one.
const DICTIONARY_SIZE: usize = 32 * 1024;
/// A sample that deflates to more than this share (in 1/1000) of its size is not compressed.
const INCOMPRESSIBLE_PER_MILLE: usize = 985;
/// gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS "unknown" (as Go writes).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// A final, empty, fixed-Huffman deflate block.
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// A compressed block on its way to the writer.
struct Done {
    seq: u64,
    deflated: Vec<u8>,
    crc: crc32fast::Hasher,
}

/// Runs `produce`, which writes the uncompressed stream into the writer it is given, and writes
/// the gzip of that stream into `sink` using `threads` compressing threads (at least one).
/// Returns `sink`.
///
/// The threads start when the stream fills its first block: a stream of one block (the layer
/// of a small program) is compressed on the calling thread, with the same bytes, without
/// starting (and tearing down) a writer and `threads` workers for one block.
pub(crate) fn compress<W, F>(level: u32, threads: usize, sink: W, produce: F) -> Result<W, OciError>
where
    W: Write + Send,
    F: FnOnce(&mut dyn Write) -> Result<(), OciError>,
{
    std::thread::scope(|scope| {
        let mut blocks = BlockSink {
            buf: Vec::with_capacity(GZIP_BLOCK_SIZE),
            seq: 0,
            dictionary: Vec::new(),
            level: level.clamp(1, 9),
            threads: threads.max(1),
            scope,
            sink: Some(sink),
            running: None,
        };
        let produced = produce(&mut blocks);
        blocks.finish(produced)
    })
}

/// One block to compress, with the tail of the block before it.
struct BlockJob {
    seq: u64,
    block: Vec<u8>,
    dictionary: Vec<u8>,
}

/// The compressing threads, once the stream has more than one block.
struct Running<'scope, W> {
    jobs: mpsc::SyncSender<BlockJob>,
    writer: std::thread::ScopedJoinHandle<'scope, io::Result<W>>,
}

/// Cuts the stream into blocks and queues them for the workers (started with the first full
/// block).
struct BlockSink<'scope, 'env, W> {
    buf: Vec<u8>,
    seq: u64,
    /// The last [`DICTIONARY_SIZE`] bytes of the block sent last.
    dictionary: Vec<u8>,
    level: u32,
    threads: usize,
    scope: &'scope std::thread::Scope<'scope, 'env>,
    /// Until the threads start.
    sink: Option<W>,
    running: Option<Running<'scope, W>>,
}

impl<'scope, W: Write + Send + 'scope> BlockSink<'scope, '_, W> {
    /// Starts the workers and the writer, which takes the sink (once).
    fn start(&mut self) -> io::Result<()> {
        if self.running.is_none() {
            let sink = self
                .sink
                .take()
                .ok_or_else(|| io::Error::other("the compressor is closed"))?;
            let (job_tx, job_rx) = mpsc::sync_channel::<BlockJob>(self.threads * 2);
            let job_rx = Arc::new(Mutex::new(job_rx));
            let (done_tx, done_rx) = mpsc::sync_channel::<Done>(self.threads * 2);
            let level = self.level;
            for _ in 0..self.threads {
                let job_rx = Arc::clone(&job_rx);
                let done_tx = done_tx.clone();
                self.scope.spawn(move || loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let done = deflate_block(job, level);
                    if done_tx.send(done).is_err() {
                        return;
                    }
                });
            }
            drop(done_tx);
            let writer = self.scope.spawn(move || write_member(sink, done_rx));
            self.running = Some(Running {
                jobs: job_tx,
                writer,
            });
        }
        Ok(())
    }

    /// The block filled so far, with the tail of the block before it.
    fn take_block(&mut self) -> BlockJob {
        let block = std::mem::replace(&mut self.buf, Vec::with_capacity(GZIP_BLOCK_SIZE));
        let tail = block
            .get(block.len().saturating_sub(DICTIONARY_SIZE)..)
            .unwrap_or(&[]);
        let dictionary = std::mem::replace(&mut self.dictionary, tail.to_vec());
        let job = BlockJob {
            seq: self.seq,
            block,
            dictionary,
        };
        self.seq += 1;
        job
    }

    fn send_block(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.start()?;
        let job = self.take_block();
        let sent = self
            .running
            .as_ref()
            .ok_or_else(|| io::Error::other("the compressor is closed"))?
            .jobs
            .send(job);
        sent.map_err(|_| self.stopped())
    }

    /// Why the threads stopped taking blocks: the workers stop when the writer does, so its
    /// error (the sink's: a full disk, a closed connection) says why, with its kind kept.
    fn stopped(&mut self) -> io::Error {
        let Some(running) = self.running.take() else {
            return io::Error::other("the compressing threads stopped");
        };
        drop(running.jobs);
        match running.writer.join() {
            Ok(Err(e)) => io::Error::new(e.kind(), format!("writing the compressed layer: {e}")),
            Ok(Ok(_)) => io::Error::other("the compressing threads stopped"),
            Err(_) => io::Error::other("the gzip writer thread panicked"),
        }
    }

    /// After `produce`: the last block, then the member's end; the sink, or why not.
    fn finish(mut self, produced: Result<(), OciError>) -> Result<W, OciError> {
        let Some(running) = self.running.take() else {
            // At most one block: compressed here (or the threads stopped, and `produced` says
            // why).
            produced?;
            let sink = self.sink.take().ok_or_else(|| OciError::Compression {
                message: "the compressor is closed".to_string(),
            })?;
            let done = (!self.buf.is_empty()).then(|| deflate_block(self.take_block(), self.level));
            return write_member(sink, done).map_err(|e| OciError::Compression {
                message: format!("writing the compressed layer: {e}"),
            });
        };
        let produced = produced.and_then(|()| {
            if self.buf.is_empty() {
                return Ok(());
            }
            let job = self.take_block();
            running.jobs.send(job).map_err(|_| OciError::Compression {
                message: "the compressing threads stopped".to_string(),
            })
        });
        // Closing the job queue lets the workers, then the writer, finish.
        drop(running.jobs);
        let written = running
            .writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the gzip writer thread panicked")));
        match (produced, written) {
            // The writer's failure explains why the producer could not go on.
            (_, Err(e)) => Err(OciError::Compression {
                message: format!("writing the compressed layer: {e}"),
            }),
            (Err(e), Ok(_)) => Err(e),
            (Ok(()), Ok(sink)) => Ok(sink),
        }
    }
}

impl<'scope, W: Write + Send + 'scope> Write for BlockSink<'scope, '_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = GZIP_BLOCK_SIZE - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == GZIP_BLOCK_SIZE {
            self.send_block()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes the header, the blocks in order as they arrive, the final block and the trailer.
fn write_member<W: Write>(mut sink: W, done: impl IntoIterator<Item = Done>) -> io::Result<W> {
    sink.write_all(&GZIP_HEADER)?;
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    let mut crc = crc32fast::Hasher::new();
    for block in done {
        pending.insert(block.seq, block);
        while let Some(block) = pending.remove(&next) {
            sink.write_all(&block.deflated)?;
            crc.combine(&block.crc);
            next += 1;
        }
    }
    if !pending.is_empty() {
        return Err(io::Error::other("a compressed block went missing"));
    }
    // crc32fast tracks the total length; gzip stores it modulo 2^32.
    let length = crc.total_len();
    let crc = crc.finalize();
    sink.write_all(&FINAL_BLOCK)?;
    sink.write_all(&crc.to_le_bytes())?;
    sink.write_all(&(length as u32).to_le_bytes())?;
    sink.flush()?;
    Ok(sink)
}

fn deflate_block(job: BlockJob, level: u32) -> Done {
    let block = job.block.as_slice();
    let mut crc = crc32fast::Hasher::new();
    crc.update(block);
    let sample = &block[..block.len().min(SAMPLE_SIZE)];
    let sample_out = deflate(sample, 1, &[]);
    let incompressible = sample_out.len() * 1000 > sample.len() * INCOMPRESSIBLE_PER_MILLE;
    let deflated = if incompressible {
        stored(block)
    } else {
        let out = deflate(block, level, &job.dictionary);
        if out.len() > stored_len(block.len()) {
            stored(block)
        } else {
            out
        }
    };
    Done {
        seq: job.seq,
        deflated,
        crc,
    }
}

/// Raw deflate of `input` (matches may reach into `dictionary`, the bytes just before it)
/// ending with a sync flush (byte-aligned, not final).
fn deflate(input: &[u8], level: u32, dictionary: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(flate2::Compression::new(level), false);
    if !dictionary.is_empty() && compress.set_dictionary(dictionary).is_err() {
        // Cannot happen for a fresh raw stream; without the dictionary the output is only
        // a little larger, and still the same on every machine.
        compress = Compress::new(flate2::Compression::new(level), false);
    }
    let mut out = Vec::with_capacity(input.len() + input.len() / 16 + 64);
    loop {
        let consumed = usize::try_from(compress.total_in()).unwrap_or(input.len());
        let rest = input.get(consumed..).unwrap_or(&[]);
        if compress
            .compress_vec(rest, &mut out, FlushCompress::Sync)
            .is_err()
        {
            // Cannot happen with valid parameters; storing is always correct.
            return stored(input);
        }
        let all_in = usize::try_from(compress.total_in()).is_ok_and(|n| n == input.len());
        if all_in && out.len() < out.capacity() {
            return out;
        }
        out.reserve(64 * 1024);
    }
}

fn stored_len(len: usize) -> usize {
    len + 5 * len.div_ceil(0xffff).max(1)
}

/// Stored (uncompressed) deflate blocks holding `input`, not final.
fn stored(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored_len(input.len()));
    for chunk in input.chunks(0xffff) {
        let len = chunk.len() as u16;
        out.push(0);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::digest::sha256_hex;
    use std::io::Read;

    fn gzip(data: &[u8], threads: usize) -> Vec<u8> {
        compress(6, threads, Vec::new(), |w| {
            // Odd write sizes cross block boundaries.
            for piece in data.chunks(77_777) {
                w.write_all(piece).map_err(|e| OciError::Compression {
                    message: e.to_string(),
                })?;
            }
            Ok(())
        })
        .unwrap()
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn noise(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    /// Text and noise that compress differently, `len` bytes.
    fn mixed(len: usize) -> Vec<u8> {
        let mut data = Vec::with_capacity(len);
        let mut i = 0u64;
        while data.len() < len {
            data.extend_from_slice(format!("entry {i:06} of the fixture\n").as_bytes());
            if i % 50 == 0 {
                data.extend(noise(300, i + 1));
            }
            i += 1;
        }
        data.truncate(len);
        data
    }

    #[test]
    fn output_bytes_are_pinned_for_one_block_and_for_several() {
        // Written by the compressor before one-block streams were compressed on the calling
        // thread: that path and the threaded one give the very same bytes as before.
        let one = gzip(&mixed(700_000), 2);
        assert_eq!(
            sha256_hex(&one),
            "206dda021395dda7f12d14542650f60fb6207b62fa799db4aadddc014a99fc02"
        );
        let exact = gzip(&mixed(GZIP_BLOCK_SIZE), 2);
        assert_eq!(
            sha256_hex(&exact),
            "f0a0b25b03203d4beb99646242f1895b742cedda157dc2964b3022f9e7ee459d"
        );
        let three = gzip(&mixed(2 * GZIP_BLOCK_SIZE + 1), 2);
        assert_eq!(
            sha256_hex(&three),
            "52f2a92430ca8058647d5fceec495a1ece9f4d51df0e6eeaced6c27150b0e8b6"
        );
        assert_eq!(gzip(&[], 3), gzip(&[], 1));
        assert_eq!(
            sha256_hex(&gzip(&[], 1)),
            "ac73670af3abed54ac6fb4695131f4099be9fbe39d6076c5d0264a6bbdae9d83"
        );
    }

    #[test]
    fn round_trips_and_ignores_thread_count() {
        let mut data = b"compressible text ".repeat(200_000);
        data.extend(noise(3 * GZIP_BLOCK_SIZE + 5, 7));
        data.extend(b"tail".repeat(1000));
        let one = gzip(&data, 1);
        let four = gzip(&data, 4);
        assert_eq!(one, four);
        assert_eq!(gunzip(&one), data);
        assert!(one.len() < data.len());
    }

    #[test]
    fn matches_reach_back_across_block_cuts() {
        // Every block starts and ends with the same 30 KB of noise, a window apart: unprimed,
        // each block costs both copies (4 x 60 KB); primed with the end of the block before,
        // its leading copy is a match (60 KB + 3 x 30 KB).
        let pattern = noise(30_000, 5);
        let mut block = pattern.clone();
        block.resize(GZIP_BLOCK_SIZE - pattern.len(), 0);
        block.extend_from_slice(&pattern);
        let data = block.repeat(4);
        let gz = gzip(&data, 2);
        assert!(gz.len() < 180_000, "{}", gz.len());
        assert_eq!(gunzip(&gz), data);
    }

    #[test]
    fn empty_and_tiny_streams_are_valid_gzip() {
        for data in [&b""[..], b"x", &[0u8; GZIP_BLOCK_SIZE][..]] {
            let gz = gzip(data, 2);
            assert_eq!(gunzip(&gz), data);
        }
    }

    #[test]
    fn incompressible_blocks_are_stored_with_little_overhead() {
        let data = noise(2 * GZIP_BLOCK_SIZE, 99);
        let gz = gzip(&data, 2);
        assert!(
            gz.len() <= data.len() + data.len() / 1000 + 64,
            "{}",
            gz.len()
        );
        assert_eq!(gunzip(&gz), data);
    }

    #[test]
    fn producer_errors_are_returned() {
        let result = compress(6, 2, Vec::new(), |w| {
            let _ = w.write_all(&[1u8; 3 * GZIP_BLOCK_SIZE]);
            Err(OciError::InvalidOption {
                what: "test".into(),
                reason: "stop".into(),
            })
        });
        assert!(matches!(result, Err(OciError::InvalidOption { .. })));
    }
}
