//! Little-endian field readers and writers that cannot panic.

/// Reads fields in order; a read past the end yields zeros and marks the reader short.
pub(crate) struct Rd<'a> {
    b: &'a [u8],
    pos: usize,
    short: bool,
}

impl<'a> Rd<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Rd<'a> {
        Rd {
            b,
            pos: 0,
            short: false,
        }
    }

    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        match self.b.get(self.pos..self.pos + N) {
            Some(s) => out.copy_from_slice(s),
            None => self.short = true,
        }
        self.pos += N;
        out
    }

    pub(crate) fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    pub(crate) fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    pub(crate) fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.take())
    }
    pub(crate) fn name(&mut self) -> [u8; 32] {
        self.take()
    }

    /// True if every byte was read and no read ran past the end.
    pub(crate) fn exact(&self) -> bool {
        !self.short && self.pos == self.b.len()
    }
}

/// Writes fields in order into a frame buffer after its 8-byte header.
pub(crate) struct Wr<'a> {
    b: &'a mut [u8],
    pos: usize,
}

impl<'a> Wr<'a> {
    pub(crate) fn new(b: &'a mut [u8], pos: usize) -> Wr<'a> {
        Wr { b, pos }
    }

    fn put(&mut self, bytes: &[u8]) {
        // Bodies are at most BODY_BYTES_MAX (checked at compile time against FRAME_BYTES_MAX),
        // so this always fits; `get_mut` keeps a bug from panicking in the server.
        if let Some(dst) = self.b.get_mut(self.pos..self.pos + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        self.pos += bytes.len();
    }

    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.put(&[v]);
        self
    }
    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.put(&v.to_le_bytes());
        self
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.put(&v.to_le_bytes());
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.put(&v.to_le_bytes());
        self
    }
    pub(crate) fn i64(&mut self, v: i64) -> &mut Self {
        self.put(&v.to_le_bytes());
        self
    }
    pub(crate) fn name(&mut self, v: &[u8; 32]) -> &mut Self {
        self.put(v);
        self
    }
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }
}
