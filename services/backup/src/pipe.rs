//! A bounded in-memory pipe between two threads of one backup, so that
//! reading and hashing files runs beside compressing and encrypting (and, on
//! restore, decrypting beside unpacking). Buffers travel back to the writer
//! for reuse, so the pipe allocates only its capacity.

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};

/// Size of one buffer handed over the pipe.
pub const CHUNK: usize = 1 << 20;
/// Buffers in flight: bounds the memory a pipe holds.
const DEPTH: usize = 4;

enum Message {
    /// A buffer (always `CHUNK` long, so it is zeroed only once) and how
    /// many of its bytes are data.
    Data(Vec<u8>, usize),
    End,
}

pub struct PipeWriter {
    sender: SyncSender<Message>,
    spare: Receiver<Vec<u8>>,
    buffer: Vec<u8>,
    filled: usize,
}

pub struct PipeReader {
    receiver: Receiver<Message>,
    spare: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    length: usize,
    position: usize,
    ended: bool,
}

pub fn pipe() -> (PipeWriter, PipeReader) {
    let (sender, receiver) = sync_channel(DEPTH);
    let (spare_sender, spare_receiver) = sync_channel(DEPTH + 2);
    let writer = PipeWriter {
        sender,
        spare: spare_receiver,
        buffer: vec![0; CHUNK],
        filled: 0,
    };
    let reader = PipeReader {
        receiver,
        spare: spare_sender,
        current: Vec::new(),
        length: 0,
        position: 0,
        ended: false,
    };
    (writer, reader)
}

fn reader_gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the other end of the backup pipeline stopped",
    )
}

impl PipeWriter {
    fn send_buffer(&mut self) -> io::Result<()> {
        let next = match self.spare.try_recv() {
            Ok(buffer) => buffer,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => vec![0; CHUNK],
        };
        let full = std::mem::replace(&mut self.buffer, next);
        let length = std::mem::take(&mut self.filled);
        self.sender
            .send(Message::Data(full, length))
            .map_err(|_| reader_gone())
    }

    /// Moves everything `input` yields into the pipe, reading straight into
    /// the pipe's buffers.
    pub fn copy_from(&mut self, input: &mut impl Read) -> io::Result<u64> {
        let mut total = 0;
        loop {
            let read = match input.read(&mut self.buffer[self.filled..]) {
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            if read == 0 {
                return Ok(total);
            }
            total += read as u64;
            self.filled += read;
            if self.filled == CHUNK {
                self.send_buffer()?;
            }
        }
    }

    /// Marks the end of the stream. A writer dropped without `finish` makes
    /// the reader fail instead of seeing a clean end.
    pub fn finish(mut self) -> io::Result<()> {
        if self.filled > 0 {
            self.send_buffer()?;
        }
        self.sender.send(Message::End).map_err(|_| reader_gone())
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let taken = (CHUNK - self.filled).min(data.len());
        self.buffer[self.filled..self.filled + taken].copy_from_slice(&data[..taken]);
        self.filled += taken;
        if self.filled == CHUNK {
            self.send_buffer()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl PipeReader {
    /// Writes everything that comes through the pipe into `output`, a whole
    /// buffer at a time (a compressor works best on large inputs).
    pub fn copy_to(&mut self, output: &mut impl Write) -> io::Result<u64> {
        let mut total = 0;
        loop {
            if self.position < self.length {
                output.write_all(&self.current[self.position..self.length])?;
                total += (self.length - self.position) as u64;
                self.position = self.length;
            }
            if self.fill()? == 0 {
                return Ok(total);
            }
        }
    }

    /// Makes the next buffer current; returns how many bytes are left in
    /// it (0 at the end).
    fn fill(&mut self) -> io::Result<usize> {
        while self.position == self.length {
            if self.ended {
                return Ok(0);
            }
            match self.receiver.recv() {
                Ok(Message::Data(buffer, length)) => {
                    let used = std::mem::replace(&mut self.current, buffer);
                    self.length = length;
                    self.position = 0;
                    // The writer may have gone; then nobody needs the buffer.
                    if used.len() == CHUNK {
                        let _ = self.spare.try_send(used);
                    }
                }
                Ok(Message::End) => self.ended = true,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the backup pipeline stopped before its end",
                    ));
                }
            }
        }
        Ok(self.length - self.position)
    }
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.fill()? == 0 {
            return Ok(0);
        }
        let available = &self.current[self.position..self.length];
        let taken = available.len().min(out.len());
        out[..taken].copy_from_slice(&available[..taken]);
        self.position += taken;
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_bytes_in_order_and_ends_cleanly() {
        let (mut writer, mut reader) = pipe();
        let data: Vec<u8> = (0..(3 * CHUNK + 12345)).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let producer = std::thread::spawn(move || -> io::Result<()> {
            for piece in sent.chunks(70_000) {
                writer.write_all(piece)?;
            }
            writer.finish()
        });
        let mut received = Vec::new();
        reader.read_to_end(&mut received).expect("reads to the end");
        producer
            .join()
            .expect("producer thread")
            .expect("producer writes");
        assert_eq!(received, data);
    }

    #[test]
    fn a_writer_that_dies_is_an_error_not_an_end() {
        let (mut writer, mut reader) = pipe();
        writer.write_all(b"partial").expect("buffers");
        drop(writer);
        let mut received = Vec::new();
        let error = reader
            .read_to_end(&mut received)
            .expect_err("an unfinished stream is an error");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }
}
