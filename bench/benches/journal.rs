//! Criterion micro-benchmarks of the journal, with a baseline.
//!
//! ```text
//! cargo bench -p ringbook-bench --bench journal
//! ```
//!
//! - `journal_append/{64,256}B/{pretouch,no_pretouch}`: one `Writer::append` (durability none,
//!   64 MiB segments), timed over `iters` appends to a fresh journal per sample (`iter_custom`),
//!   so segment rolls are included at their natural rate.
//! - `journal_append/{64,256}B/bufwriter_baseline`: the naive alternative — the same frame bytes
//!   (CRC32C included) written through a 64 KiB `BufWriter<File>` — which pays a `write(2)`
//!   every 64 KiB and a `memcpy` into the buffer on every record.
//! - `journal_replay/64B`: the sequential reader over 1M records, checksums verified.
//!
//! The fuller harness (latency percentiles, durability policies) is `--bench journal_append`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringbook_journal::{Durability, JournalConfig, Pretouch, Reader, Writer};

fn fresh_dir(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "ringbook-journal-criterion-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).expect("create bench dir");
    path
}

fn config(pretouch: bool) -> JournalConfig {
    JournalConfig {
        segment_len_bytes: 64 << 20,
        payload_len_max_bytes: 4096,
        durability: Durability::None,
        pretouch: if pretouch {
            Pretouch::DEFAULT
        } else {
            Pretouch::Off
        },
        first_sequence: 1,
    }
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("journal_append");
    group.sample_size(20);
    for payload_len in [64usize, 256] {
        let payload: Vec<u8> = (0..payload_len).map(|i| i as u8).collect();
        group.throughput(Throughput::Elements(1));
        for pretouch in [true, false] {
            let name = if pretouch { "pretouch" } else { "no_pretouch" };
            group.bench_function(BenchmarkId::new(format!("{payload_len}B"), name), |b| {
                b.iter_custom(|iters| {
                    let dir = fresh_dir(name);
                    let mut writer = Writer::open(&dir, config(pretouch)).expect("open");
                    let start = Instant::now();
                    for seq in 1..=iters {
                        writer.append(seq, 1, seq, &payload).expect("append");
                    }
                    let elapsed = start.elapsed();
                    drop(writer);
                    let _ = std::fs::remove_dir_all(&dir);
                    elapsed
                })
            });
        }
        group.bench_function(
            BenchmarkId::new(format!("{payload_len}B"), "bufwriter_baseline"),
            |b| {
                let frame_len = ringbook_journal::format::frame_len_for(payload_len);
                let mut frame = vec![0u8; frame_len];
                b.iter_custom(|iters| {
                    let dir = fresh_dir("baseline");
                    let file = File::create(dir.join("baseline.bin")).expect("create");
                    let mut out = BufWriter::with_capacity(64 << 10, file);
                    let start = Instant::now();
                    for seq in 1..=iters {
                        frame[..4].copy_from_slice(&(frame_len as u32).to_le_bytes());
                        frame[8..16].copy_from_slice(&seq.to_le_bytes());
                        frame[32..32 + payload_len].copy_from_slice(&payload);
                        let crc = ringbook_journal::format::frame_checksum(&frame[8..]);
                        frame[4..8].copy_from_slice(&crc.to_le_bytes());
                        out.write_all(&frame).expect("write");
                    }
                    out.flush().expect("flush");
                    let elapsed = start.elapsed();
                    drop(out);
                    let _ = std::fs::remove_dir_all(&dir);
                    elapsed
                })
            },
        );
    }
    group.finish();
}

fn replay(c: &mut Criterion) {
    const RECORDS: u64 = 1_000_000;
    let dir = fresh_dir("replay");
    let payload = [7u8; 64];
    let mut writer = Writer::open(&dir, config(true)).expect("open");
    for seq in 1..=RECORDS {
        writer.append(seq, 1, seq, &payload).expect("append");
    }
    drop(writer);
    let mut group = c.benchmark_group("journal_replay");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(RECORDS));
    group.bench_function("64B", |b| {
        b.iter(|| {
            let mut reader = Reader::open(&dir).expect("open");
            let mut n = 0u64;
            while let Some(r) = reader.next().expect("read") {
                n += r.payload.len() as u64;
            }
            assert_eq!(n, RECORDS * 64);
            n
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, append, replay);
criterion_main!(benches);
