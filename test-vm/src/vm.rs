//! One appliance machine under qemu: software emulation (TCG), UEFI
//! (OVMF), a virtio disk that is a qcow2 overlay on the machine's copy of
//! the image, user-mode networking with ports forwarded from the host's
//! loopback, optionally a TPM2 (swtpm) and a second NIC on a private
//! network shared with other machines. The serial console is the machine's
//! stdin and stdout: everything it prints is kept (and written to
//! `serial.log`), and a test can type on it.

use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, ChildStdin, Command};

use crate::image::run;

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// What the boot report unit prints (see `image/files/usr/libexec/archipel/test-marker`).
pub const REPORT: &str = "ARCHIPEL-TEST: ";

/// A second NIC on a private network of machines (qemu's socket netdev on
/// a multicast group: no root, no bridge).
#[derive(Clone, Debug)]
pub struct PrivateNet {
    /// The multicast group and port, e.g. `230.0.0.1:5555`; one per network.
    pub group: SocketAddr,
    /// This NIC's MAC address, unique on the network.
    pub mac: String,
}

/// One machine.
pub struct Vm {
    name: String,
    dir: PathBuf,
    /// Guest TCP port -> host port on 127.0.0.1.
    forwards: Vec<(u16, u16)>,
    private_net: Option<PrivateNet>,
    uuid: String,
    serial: Arc<Mutex<Vec<u8>>>,
    /// Where in `serial` the current boot started.
    boot_start: usize,
    booted_at: Instant,
    qemu: Option<Child>,
    stdin: Option<ChildStdin>,
    swtpm: Option<Child>,
}

impl Vm {
    /// A machine in `dir` whose disk is an overlay on `disk` (its own copy
    /// of the image), with the guest's TCP `ports` forwarded from free ports
    /// on the host's loopback.
    pub fn create(
        name: &str,
        dir: &Path,
        disk: &Path,
        ports: &[u16],
        private_net: Option<PrivateNet>,
    ) -> Result<Self> {
        fs::create_dir_all(dir)?;
        // The overlay must be larger than the image: the free space is
        // where the machine makes its data partition at first boot.
        run(std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(disk)
            .arg(dir.join("disk.qcow2"))
            .arg("8G"))
        .context("qemu-img (apt-get install qemu-utils)")?;
        fs::copy(OVMF_VARS, dir.join("vars.fd"))
            .with_context(|| format!("copying {OVMF_VARS} (apt-get install ovmf)"))?;
        let forwards = ports
            .iter()
            .map(|&guest| Ok((guest, crate::ports::reserve()?)))
            .collect::<Result<_>>()?;
        // The firmware's UUID becomes the machine ID (systemd.machine_id=firmware).
        let uuid = fs::read_to_string("/proc/sys/kernel/random/uuid")?
            .trim()
            .to_owned();
        Ok(Self {
            name: name.to_owned(),
            dir: dir.to_owned(),
            forwards,
            private_net,
            uuid,
            serial: Arc::default(),
            boot_start: 0,
            booted_at: Instant::now(),
            qemu: None,
            stdin: None,
            swtpm: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host port that reaches the guest's TCP `port`.
    pub fn port(&self, guest: u16) -> u16 {
        self.forwards
            .iter()
            .find(|(g, _)| *g == guest)
            .map(|(_, host)| *host)
            .unwrap_or_else(|| panic!("{}: port {guest} is not forwarded", self.name))
    }

    /// Powers the machine on; with `tpm`, a TPM2 (swtpm) whose state
    /// survives reboots. Returns at once; see [`Vm::wait_ready`].
    pub async fn boot(&mut self, tpm: bool) -> Result<()> {
        if self.qemu.is_some() {
            bail!("{}: already running", self.name);
        }
        // One host thread runs both vCPUs: with multi-threaded TCG a vCPU
        // can still execute an int3 that the other has already patched
        // away (the kernel's live text patching), and the guest panics
        // now and then ("Oops: int3" early in boot).
        let mut args: Vec<String> = [
            "-accel",
            "tcg,thread=single",
            "-machine",
            "q35",
            "-m",
            "2048",
            "-smp",
            "2",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            "stdio",
            "-monitor",
            "none",
        ]
        .map(String::from)
        .into();
        args.push("-qmp".into());
        args.push(format!(
            "unix:{},server=on,wait=off",
            self.qmp_path().display()
        ));
        args.push("-drive".into());
        args.push(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
        ));
        args.push("-drive".into());
        args.push(format!(
            "if=pflash,format=raw,unit=1,file={}",
            self.dir.join("vars.fd").display()
        ));
        args.push("-drive".into());
        args.push(format!(
            "file={},if=virtio,format=qcow2",
            self.dir.join("disk.qcow2").display()
        ));
        let mut user_net = "user,id=n0".to_owned();
        for (guest, host) in &self.forwards {
            user_net.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        args.extend([
            "-netdev".into(),
            user_net,
            "-device".into(),
            "virtio-net-pci,netdev=n0".into(),
        ]);
        if let Some(net) = &self.private_net {
            args.push("-netdev".into());
            args.push(format!(
                "socket,id=n1,mcast={},localaddr=127.0.0.1",
                net.group
            ));
            args.push("-device".into());
            args.push(format!("virtio-net-pci,netdev=n1,mac={}", net.mac));
        }
        args.extend([
            "-device".into(),
            "virtio-rng-pci".into(),
            "-uuid".into(),
            self.uuid.clone(),
        ]);
        // The boot report unit runs only with this credential;
        // ARCHIPEL_VM_JOURNAL=1 adds each boot's journal to the console.
        let words = if std::env::var_os("ARCHIPEL_VM_JOURNAL").is_some() {
            "report journal"
        } else {
            "report"
        };
        args.extend([
            "-smbios".into(),
            format!("type=11,value=io.systemd.credential:archipel.test={words}"),
        ]);
        if tpm {
            let socket = self.start_swtpm().await?;
            args.extend([
                "-chardev".into(),
                format!("socket,id=chrtpm,path={}", socket.display()),
                "-tpmdev".into(),
                "emulator,id=tpm0,chardev=chrtpm".into(),
                "-device".into(),
                "tpm-crb,tpmdev=tpm0".into(),
            ]);
        }
        let mut child = Command::new("qemu-system-x86_64")
            .args(&args)
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(self.dir.join("qemu.err"))?)
            .kill_on_drop(true)
            .spawn()
            .context("starting qemu-system-x86_64 (apt-get install qemu-system-x86)")?;
        self.stdin = child.stdin.take();
        let mut stdout = child.stdout.take().context("qemu's stdout")?;
        self.boot_start = self.serial.lock().expect("serial lock").len();
        self.booted_at = Instant::now();
        let serial = Arc::clone(&self.serial);
        let mut log = fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("serial.log"))?;
        tokio::spawn(async move {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stdout.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                serial
                    .lock()
                    .expect("serial lock")
                    .extend_from_slice(&buf[..n]);
                let _ = log.write_all(&buf[..n]);
            }
        });
        self.qemu = Some(child);
        Ok(())
    }

    async fn start_swtpm(&mut self) -> Result<PathBuf> {
        let state = self.dir.join("tpm");
        fs::create_dir_all(&state)?;
        let socket = self.dir.join("swtpm.sock");
        let _ = fs::remove_file(&socket);
        // --terminate: it exits when qemu lets go; the state stays for the next boot.
        let child = Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--terminate")
            .arg("--tpmstate")
            .arg(format!("dir={}", state.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", socket.display()))
            .arg("--log")
            .arg(format!("file={}", self.dir.join("swtpm.log").display()))
            .kill_on_drop(true)
            .spawn()
            .context("starting swtpm (apt-get install swtpm)")?;
        self.swtpm = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if Instant::now() > deadline {
                bail!("{}: swtpm made no socket", self.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(socket)
    }

    fn qmp_path(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }

    /// What the serial console printed since this boot started.
    pub fn console(&self) -> String {
        let serial = self.serial.lock().expect("serial lock");
        String::from_utf8_lossy(&serial[self.boot_start.min(serial.len())..]).into_owned()
    }

    /// The last `lines` lines of this boot's console, for failure messages.
    pub fn console_tail(&self, lines: usize) -> String {
        let console = self.console();
        let all: Vec<&str> = console.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Time since this boot started.
    pub fn since_boot(&self) -> Duration {
        self.booted_at.elapsed()
    }

    /// Waits until this boot's console has a line containing `needle` and
    /// returns that line.
    pub async fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.console().lines().find(|l| l.contains(needle)) {
                return Ok(line.to_owned());
            }
            if let Some(status) = self.exited()? {
                bail!(
                    "{}: qemu exited ({status}) before the console said {needle:?}:\n{}",
                    self.name,
                    self.console_tail(40)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: the console did not say {needle:?} within {timeout:?}:\n{}",
                    self.name,
                    self.console_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits for the boot report and checks that the node is running
    /// (`archipel.service` is `Type=notify`: active means ready) and no
    /// unit failed. Returns the report's lines.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Vec<String>> {
        self.wait_for(&format!("{REPORT}done"), timeout).await?;
        let report: Vec<String> = self
            .console()
            .lines()
            .filter_map(|l| l.split_once(REPORT).map(|(_, rest)| rest.to_owned()))
            .collect();
        let ready = fact(&report, "units:").is_some_and(|u| u.contains(" archipel=active"))
            && fact(&report, "failed=").is_some_and(|f| f.trim().is_empty());
        if !ready {
            bail!(
                "{}: booted, but not ready:\n{}",
                self.name,
                report.join("\n")
            );
        }
        Ok(report)
    }

    /// Types `text` and Enter on the serial console.
    pub async fn type_line(&mut self, text: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("the machine is off")?;
        stdin.write_all(text.as_bytes()).await?;
        stdin.write_all(b"\r").await?;
        stdin.flush().await?;
        Ok(())
    }

    /// Presses the power button (ACPI) and waits for the machine to shut
    /// down cleanly.
    pub async fn power_off(&mut self, timeout: Duration) -> Result<()> {
        let mut qmp = BufReader::new(
            UnixStream::connect(self.qmp_path())
                .await
                .context("connecting to qemu's QMP socket")?,
        );
        let mut line = String::new();
        qmp.read_line(&mut line).await?; // the greeting
        for command in ["qmp_capabilities", "system_powerdown"] {
            qmp.get_mut()
                .write_all(format!("{{\"execute\":\"{command}\"}}\n").as_bytes())
                .await?;
            line.clear();
            qmp.read_line(&mut line).await?;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if self.exited()?.is_some() {
                self.stopped();
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: did not power off within {timeout:?}:\n{}",
                    self.name,
                    self.console_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Cuts the power: qemu is killed, nothing is flushed.
    pub async fn pull_plug(&mut self) -> Result<()> {
        if let Some(mut qemu) = self.qemu.take() {
            qemu.kill().await?;
        }
        self.stopped();
        Ok(())
    }

    fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        match self.qemu.as_mut() {
            Some(qemu) => Ok(qemu.try_wait()?),
            None => bail!("{}: the machine is off", self.name),
        }
    }

    fn stopped(&mut self) {
        self.qemu = None;
        self.stdin = None;
        // swtpm --terminate exits on its own once qemu is gone.
        self.swtpm = None;
    }
}

/// The value of `key` (e.g. `"ntp="`) in a boot report, if it has one.
pub fn fact<'a>(report: &'a [String], key: &str) -> Option<&'a str> {
    report.iter().find_map(|line| line.strip_prefix(key))
}
