//! Create and restore throughput of a ~1 GiB node-shaped data directory,
//! side by side with `tar | zstd -T0 -3 | age` and the reverse (Debian's
//! `age` and `zstd`: `apt-get install -y age zstd`).
//!
//! `cargo bench -p archipel-backup` prints a table. Work files live in
//! `$ARCHIPEL_BENCH_DIR` (default `/var/tmp/archipel-backup-bench`); the data
//! directory is made once and reused. Both sides read a warm page cache,
//! and both end durable: ours fsyncs the archive and syncs the restored file
//! system; the pipelines get `sync -f` on their output.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret as _;
use archipel_backup::{
    BackupName, CreateOptions, DecryptionKey, DirTarget, Encryption, NoProgress, Source, Unlock,
    create, restore,
};
use rand::{Rng as _, RngCore as _, SeedableRng as _};

const DATA_VERSION: &str = "node-shaped data v1\n";
const RUNS: usize = 3;

fn main() {
    for tool in ["tar", "zstd", "age"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success());
        assert!(
            found,
            "`{tool}` is needed for the comparison: apt-get install -y age zstd"
        );
    }
    let work = std::env::var_os("ARCHIPEL_BENCH_DIR").map_or_else(
        || PathBuf::from("/var/tmp/archipel-backup-bench"),
        PathBuf::from,
    );
    let data = work.join("data");
    let bytes = ensure_data(&data);
    let mb = bytes as f64 / 1e6;
    println!(
        "data directory: {} ({:.0} MB in {} files)",
        data.display(),
        mb,
        count_files(&data)
    );

    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let identity_file = work.join("identity.txt");
    fs::write(
        &identity_file,
        identity.to_string().expose_secret().as_bytes(),
    )
    .expect("identity file");
    let key =
        DecryptionKey::parse_identity_file(identity.to_string().expose_secret()).expect("identity");

    let pipeline_out = work.join("pipeline.tar.zst.age");
    let pipeline_restore = work.join("pipeline-restore");
    let target_dir = work.join("target");
    let restored = work.join("restored");
    let sources = [Source::new("data", &data)];
    let mut times: [Vec<Duration>; 4] = Default::default();
    let mut cpu: [Vec<Duration>; 4] = Default::default();
    let mut name = None;
    let mut archive_size = 0;

    // Runs alternate between the two sides, each starting from a flushed
    // page cache (`sync`), so neither pays for the other's writeback.
    for run in 0..RUNS {
        let _ = fs::remove_file(&pipeline_out);
        sync();
        let used = cpu_used(Who::Children);
        times[0].push(shell(&format!(
            "tar -C {data} -cf - . | zstd -q -T0 -3 | age -r {recipient} > {out} && sync -f {out}",
            data = data.display(),
            out = pipeline_out.display()
        )));
        cpu[0].push(cpu_used(Who::Children) - used);

        reset_dir(&target_dir);
        let target = DirTarget::new(&target_dir).expect("target");
        let mut options = CreateOptions::new(
            "bench.archipel.test",
            ed25519_dalek::SigningKey::from_bytes(&[5; 32]),
            Encryption::to_recipients(&[recipient.as_str()]).expect("recipient"),
        );
        options.time =
            Some(jiff::Timestamp::from_second(1_800_000_000 + run as i64).expect("time"));
        sync();
        let used = cpu_used(Who::Myself);
        let start = Instant::now();
        let info = create(&sources, &options, &target, &NoProgress).expect("create");
        times[1].push(start.elapsed());
        cpu[1].push(cpu_used(Who::Myself) - used);
        archive_size = info.archive_size;
        name = Some(info.name);
    }
    let name: BackupName = name.expect("a backup was made");
    let target = DirTarget::new(&target_dir).expect("target");
    for _ in 0..RUNS {
        reset_dir(&pipeline_restore);
        sync();
        let used = cpu_used(Who::Children);
        times[2].push(shell(&format!(
            "age -d -i {identity} {input} | zstd -q -d | tar -C {dest} -xf - && sync -f {dest}",
            identity = identity_file.display(),
            input = pipeline_out.display(),
            dest = pipeline_restore.display()
        )));
        cpu[2].push(cpu_used(Who::Children) - used);

        if restored.exists() {
            fs::remove_dir_all(&restored).expect("clear restore");
        }
        sync();
        let used = cpu_used(Who::Myself);
        let start = Instant::now();
        restore(
            &target,
            &name,
            &Unlock::new(&key),
            &restored,
            None,
            &NoProgress,
        )
        .expect("restore");
        times[3].push(start.elapsed());
        cpu[3].push(cpu_used(Who::Myself) - used);
    }
    let pipeline_size = fs::metadata(&pipeline_out).expect("pipeline output").len();
    let labels = [
        ("create  tar | zstd -T0 -3 | age", pipeline_size),
        ("create  archipel-backup", archive_size),
        ("restore age -d | zstd -d | tar -x", pipeline_size),
        ("restore archipel-backup (verifies)", archive_size),
    ];

    let mut table = String::new();
    let _ = writeln!(
        table,
        "\n{:<36} {:>7} {:>7} {:>16} {:>10} {:>11}",
        "", "best s", "MB/s", "runs (s)", "CPU s", "archive MB"
    );
    for (((label, size), times), cpu) in labels.iter().zip(&times).zip(&cpu) {
        let best = times.iter().min().expect("runs").as_secs_f64();
        let all: Vec<String> = times
            .iter()
            .map(|t| format!("{:.2}", t.as_secs_f64()))
            .collect();
        let least_cpu = cpu.iter().min().expect("runs").as_secs_f64();
        let _ = writeln!(
            table,
            "{label:<36} {best:>7.2} {:>7.0} {:>16} {least_cpu:>10.2} {:>11.1}",
            mb / best,
            all.join(" "),
            *size as f64 / 1e6
        );
    }
    let _ = writeln!(
        table,
        "(MB/s: data directory bytes / best wall time; CPU s: user + system, least of the runs)"
    );
    print!("{table}");
    std::io::stdout().flush().expect("stdout");

    // The restored tree must equal the source (a benchmark of a broken
    // restore would be worthless).
    let diff = Command::new("diff")
        .arg("-r")
        .arg(&data)
        .arg(restored.join("data"))
        .status()
        .expect("diff");
    assert!(diff.success(), "restored data differs from the source");
    for leftover in [&pipeline_restore, &restored, &target_dir] {
        let _ = fs::remove_dir_all(leftover);
    }
    let _ = fs::remove_file(&pipeline_out);
}

enum Who {
    Myself,
    Children,
}

/// User plus system CPU time: of this process (all threads), or of the
/// children it has waited for.
fn cpu_used(who: Who) -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(match who {
        Who::Myself => UsageWho::RUSAGE_SELF,
        Who::Children => UsageWho::RUSAGE_CHILDREN,
    })
    .expect("getrusage");
    let seconds = |time: nix::sys::time::TimeVal| {
        Duration::new(time.tv_sec() as u64, time.tv_usec() as u32 * 1000)
    };
    seconds(usage.user_time()) + seconds(usage.system_time())
}

fn sync() {
    let status = Command::new("sync").status().expect("run sync");
    assert!(status.success(), "sync failed");
}

fn shell(script: &str) -> Duration {
    let start = Instant::now();
    let status = Command::new("bash")
        .args(["-o", "pipefail", "-c", script])
        .status()
        .expect("run bash");
    let elapsed = start.elapsed();
    assert!(status.success(), "`{script}` failed: {status}");
    elapsed
}

fn reset_dir(path: &Path) {
    if path.exists() {
        fs::remove_dir_all(path).expect("clear directory");
    }
    fs::create_dir_all(path).expect("create directory");
}

fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            let path = entry.expect("entry").path();
            if path.is_dir() { count_files(&path) } else { 1 }
        })
        .sum()
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dir_bytes(&path)
            } else {
                fs::metadata(&path).expect("metadata").len()
            }
        })
        .sum()
}

/// About 1 GiB shaped like a node: RocksDB-like table files of event JSON
/// (compressible), a write-ahead log, and media: many small and some large
/// files of incompressible bytes (images, encrypted attachments).
fn ensure_data(data: &Path) -> u64 {
    let marker = data.join(".complete");
    if fs::read_to_string(&marker).is_ok_and(|text| text == DATA_VERSION) {
        return dir_bytes(data);
    }
    if data.exists() {
        fs::remove_dir_all(data).expect("clear old data");
    }
    eprintln!("making the data directory (once) ...");
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let db = data.join("db");
    fs::create_dir_all(&db).expect("db dir");
    // 64 table files of 8 MiB and a 16 MiB log: 528 MiB of event JSON.
    for index in 0..64 {
        fs::write(
            db.join(format!("{:06}.sst", 100 + index)),
            events(&mut rng, 8 << 20),
        )
        .expect("table file");
    }
    fs::write(db.join("000200.log"), events(&mut rng, 16 << 20)).expect("log");
    fs::write(db.join("CURRENT"), b"MANIFEST-000199\n").expect("CURRENT");
    // Media: 3000 files of 4-256 KiB (~390 MiB) and 8 of 12 MiB.
    for index in 0..3000 {
        let size = rng.gen_range(4 << 10..256 << 10);
        let path = data.join(format!(
            "media/{:02x}/{:04x}{:012x}",
            index % 256,
            index,
            rng.r#gen::<u64>() >> 16
        ));
        fs::create_dir_all(path.parent().expect("parent")).expect("media dir");
        fs::write(path, random(&mut rng, size)).expect("media file");
    }
    for index in 0..8 {
        fs::write(
            data.join(format!("media/video-{index}.mp4")),
            random(&mut rng, 12 << 20),
        )
        .expect("large media");
    }
    fs::write(&marker, DATA_VERSION).expect("marker");
    dir_bytes(data)
}

fn random(rng: &mut rand::rngs::StdRng, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    bytes
}

const WORDS: &[&str] = &[
    "de",
    "het",
    "een",
    "vergadering",
    "minister",
    "kamerbrief",
    "besluit",
    "concept",
    "afspraak",
    "morgen",
    "overleg",
    "staatssecretaris",
    "nota",
    "advies",
    "wetsvoorstel",
    "planning",
    "graag",
    "reactie",
    "vandaag",
    "update",
    "stukken",
    "begroting",
    "agenda",
    "om",
    "10:00",
    "akkoord",
    "dank",
    "zie",
    "bijlage",
    "Woo-verzoek",
    "termijn",
    "ambtelijk",
];

/// Matrix event JSON lines with random ids, senders and message text.
fn events(rng: &mut rand::rngs::StdRng, len: usize) -> Vec<u8> {
    let mut out = String::with_capacity(len + 1024);
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let id = |rng: &mut rand::rngs::StdRng, n: usize| -> String {
        (0..n)
            .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
            .collect()
    };
    while out.len() < len {
        let event_id = id(rng, 43);
        let room = id(rng, 18);
        let words = rng.gen_range(4..30);
        let body: Vec<&str> = (0..words)
            .map(|_| WORDS[rng.gen_range(0..WORDS.len())])
            .collect();
        let _ = writeln!(
            out,
            r#"{{"event_id":"${event_id}","room_id":"!{room}:bzk.archipel.test","sender":"@user{}:bzk.archipel.test","origin_server_ts":{},"type":"m.room.message","content":{{"msgtype":"m.text","body":"{}"}}}}"#,
            rng.gen_range(0..5000),
            1_770_000_000_000u64 + rng.gen_range(0..100_000_000u64),
            body.join(" ")
        );
    }
    out.truncate(len);
    out.into_bytes()
}
