//! How a fuzz input is read: configuration bytes first, then split points,
//! then the stream. A short input reads as zeros, so every byte string is a
//! valid input and the fuzzer never wastes runs on a parse error.
//!
//! Layout shared by the stream targets (framing, tne, cmd, upload,
//! transform):
//!
//! ```text
//! config bytes (target-specific, fixed count)
//! n     1 byte: number of split points, n % 9
//! cuts  n big-endian u16: split positions, each taken modulo len + 1
//! stream the rest: the bytes a client sends
//! ```

/// A reader over the fuzzer's bytes.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A reader at the start of `data`.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    /// The next byte, or 0 past the end.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next big-endian u16, zeros past the end.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// The next big-endian u32, zeros past the end.
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// The next `n` bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// Split points: a count byte (modulo 9), then that many u16s.
    pub fn cuts(&mut self) -> Vec<u16> {
        let n = self.byte() % 9;
        (0..n).map(|_| self.u16()).collect()
    }

    /// Whatever is left.
    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// `stream` cut at `cuts` (each modulo `len + 1`, any order).
pub fn split<'s>(stream: &'s [u8], cuts: &[u16]) -> Vec<&'s [u8]> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|&c| usize::from(c) % (stream.len() + 1))
        .collect();
    points.sort_unstable();
    let mut chunks = Vec::with_capacity(points.len() + 1);
    let mut start = 0;
    for p in points {
        chunks.push(stream.get(start..p).unwrap_or_default());
        start = p;
    }
    chunks.push(stream.get(start..).unwrap_or_default());
    chunks
}

/// Encodes an input of the shared layout (for seeds).
pub fn encode(config: &[u8], cuts: &[u16], stream: &[u8]) -> Vec<u8> {
    let mut v = config.to_vec();
    v.push(cuts.len() as u8);
    for c in cuts {
        v.extend_from_slice(&c.to_be_bytes());
    }
    v.extend_from_slice(stream);
    v
}

/// The `--max-line` a config byte selects: 0..=63 for most values (to
/// reach the limit often), the default 8192 for the top quarter.
pub fn max_line(b: u8) -> usize {
    if b >= 0xc0 {
        8192
    } else {
        usize::from(b & 0x3f)
    }
}

/// The spec's line rules, the slow obvious way (a reference for the
/// framer): the lines of `stream` (one CR before LF dropped), `None` for an
/// over-long one, and whether the bytes after the last LF are a partial
/// line still within the limit (`Some(false)`), too long already
/// (`Some(true)`, reported as a line of its own), or absent (`None`).
pub fn reference_lines(max_line: usize, stream: &[u8]) -> (Vec<Option<&[u8]>>, Option<bool>) {
    let mut parts: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    let tail = parts.pop().unwrap_or_default();
    let mut lines: Vec<Option<&[u8]>> = parts
        .into_iter()
        .map(|part| {
            let line = part.strip_suffix(b"\r").unwrap_or(part);
            (line.len() <= max_line).then_some(line)
        })
        .collect();
    let tail_state = if tail.is_empty() {
        None
    } else {
        // A CR at the very end may yet be dropped, so it does not count.
        let at_least = tail.len() - usize::from(tail.last() == Some(&b'\r'));
        let too_long = at_least > max_line;
        if too_long {
            lines.push(None);
        }
        Some(too_long)
    };
    (lines, tail_state)
}
