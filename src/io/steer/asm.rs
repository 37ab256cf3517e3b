//! Just enough of an eBPF assembler to write the steering program in Rust
//! (no clang, no object file, nothing prebuilt): the instruction encoding
//! of the kernel's `include/uapi/linux/bpf.h` and labels for jumps.
//!
//! Every constructor is named after the instruction it emits, as the
//! kernel's own `filter.h` macros are (`BPF_ALU64_IMM`, `BPF_JMP_IMM`...).

/// One 8-byte eBPF instruction as the kernel reads it (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// Operation: class, size or source, and mode or op.
    pub code: u8,
    /// Destination register in the low nibble, source in the high one.
    pub regs: u8,
    /// Signed offset: memory displacement or jump distance.
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

/// A register. R0 holds results, R1 to R5 are clobbered by calls and by
/// the packet loads, R6 to R9 survive them, R10 is the read-only frame
/// pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg(pub u8);

/// Return value and packet-load result.
pub const R0: Reg = Reg(0);
/// First argument: the context (`struct __sk_buff *`) at entry.
pub const R1: Reg = Reg(1);
/// Scratch.
pub const R2: Reg = Reg(2);
/// Scratch.
pub const R3: Reg = Reg(3);
/// Scratch.
pub const R4: Reg = Reg(4);
/// Callee-saved: the packet loads need the context here.
pub const R6: Reg = Reg(6);
/// Callee-saved.
pub const R7: Reg = Reg(7);
/// Callee-saved.
pub const R8: Reg = Reg(8);
/// Callee-saved.
pub const R9: Reg = Reg(9);
/// Frame pointer: the stack is the 512 bytes below it.
pub const R10: Reg = Reg(10);

// Instruction classes.
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const JMP: u8 = 0x05;
const ALU: u8 = 0x04;
const ALU64: u8 = 0x07;
// Sizes.
const W: u8 = 0x00;
const B: u8 = 0x10;
const DW: u8 = 0x18;
// Modes.
const IMM: u8 = 0x00;
const IND: u8 = 0x40;
const MEM: u8 = 0x60;
// Source operand: immediate or register.
const K: u8 = 0x00;
const X: u8 = 0x08;

/// ALU operations.
#[derive(Clone, Copy, Debug)]
#[repr(u8)]
pub enum Alu {
    /// dst += src
    Add = 0x00,
    /// dst -= src
    Sub = 0x10,
    /// dst *= src
    Mul = 0x20,
    /// dst |= src
    Or = 0x40,
    /// dst &= src
    And = 0x50,
    /// dst <<= src
    Lsh = 0x60,
    /// dst >>= src (logical)
    Rsh = 0x70,
    /// dst = -dst (the source is ignored)
    Neg = 0x80,
    /// dst ^= src
    Xor = 0xa0,
    /// dst = src
    Mov = 0xb0,
}

/// Conditional jumps (unsigned comparisons).
#[derive(Clone, Copy, Debug)]
#[repr(u8)]
pub enum Cond {
    /// ==
    Eq = 0x10,
    /// >
    Gt = 0x20,
    /// >=
    Ge = 0x30,
    /// !=
    Ne = 0x50,
}

const JA: u8 = 0x00;
const EXIT: u8 = 0x90;

/// A jump target, resolved when the program is finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

/// A program under construction: instructions, labels and the jumps that
/// wait for them.
#[derive(Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

fn regs(dst: Reg, src: Reg) -> u8 {
    dst.0 | (src.0 << 4)
}

impl Asm {
    /// A label to jump to, placed later with [`Asm::bind`].
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Places `l` at the next instruction.
    pub fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }

    fn push(&mut self, code: u8, dst: Reg, src: Reg, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            regs: regs(dst, src),
            off,
            imm,
        });
    }

    /// `dst op= imm`, 64-bit (`BPF_ALU64_IMM`).
    pub fn alu64_imm(&mut self, op: Alu, dst: Reg, imm: i32) {
        self.push(ALU64 | K | op as u8, dst, Reg(0), 0, imm);
    }

    /// `dst op= src`, 64-bit (`BPF_ALU64_REG`).
    pub fn alu64_reg(&mut self, op: Alu, dst: Reg, src: Reg) {
        self.push(ALU64 | X | op as u8, dst, src, 0, 0);
    }

    /// `dst op= imm` on the low 32 bits, the high 32 cleared
    /// (`BPF_ALU32_IMM`).
    pub fn alu32_imm(&mut self, op: Alu, dst: Reg, imm: i32) {
        self.push(ALU | K | op as u8, dst, Reg(0), 0, imm);
    }

    /// `dst op= src` on the low 32 bits, the high 32 cleared
    /// (`BPF_ALU32_REG`).
    pub fn alu32_reg(&mut self, op: Alu, dst: Reg, src: Reg) {
        self.push(ALU | X | op as u8, dst, src, 0, 0);
    }

    /// `dst = imm` as 32 bits, zero-extended (`BPF_MOV32_IMM`).
    pub fn mov32_imm(&mut self, dst: Reg, imm: i32) {
        self.push(ALU | K | Alu::Mov as u8, dst, Reg(0), 0, imm);
    }

    /// `dst = imm` for a full 64-bit constant: two instruction slots
    /// (`BPF_LD_IMM64`).
    pub fn ld_imm64(&mut self, dst: Reg, imm: u64) {
        self.push(LD | DW | IMM, dst, Reg(0), 0, imm as u32 as i32);
        self.push(0, Reg(0), Reg(0), 0, (imm >> 32) as u32 as i32);
    }

    /// `r0 = packet[src + imm]`, one byte (`BPF_LD_IND(BPF_B)`): the
    /// legacy packet load of socket filters. The context must be in R6;
    /// R1 to R5 are clobbered; a load past the end ends the program with 0.
    pub fn ld_ind_b(&mut self, src: Reg, imm: i32) {
        self.push(LD | B | IND, Reg(0), src, 0, imm);
    }

    /// `r0 = ntohl(*(u32 *)&packet[src + imm])` (`BPF_LD_IND(BPF_W)`):
    /// four bytes, the first in the high byte. As [`Asm::ld_ind_b`].
    pub fn ld_ind_w(&mut self, src: Reg, imm: i32) {
        self.push(LD | W | IND, Reg(0), src, 0, imm);
    }

    /// `dst = *(u32 *)(src + off)` (`BPF_LDX_MEM(BPF_W)`).
    pub fn ldx_w(&mut self, dst: Reg, src: Reg, off: i16) {
        self.push(LDX | W | MEM, dst, src, off, 0);
    }

    /// `dst = *(u8 *)(src + off)` (`BPF_LDX_MEM(BPF_B)`).
    pub fn ldx_b(&mut self, dst: Reg, src: Reg, off: i16) {
        self.push(LDX | B | MEM, dst, src, off, 0);
    }

    /// `*(u64 *)(dst + off) = imm`, sign-extended (`BPF_ST_MEM(BPF_DW)`).
    pub fn st_dw(&mut self, dst: Reg, off: i16, imm: i32) {
        self.push(ST | DW | MEM, dst, Reg(0), off, imm);
    }

    /// `dst = *(u64 *)(src + off)` (`BPF_LDX_MEM(BPF_DW)`).
    pub fn ldx_dw(&mut self, dst: Reg, src: Reg, off: i16) {
        self.push(LDX | DW | MEM, dst, src, off, 0);
    }

    /// `*(u64 *)(dst + off) = src` (`BPF_STX_MEM(BPF_DW)`).
    pub fn stx_dw(&mut self, dst: Reg, off: i16, src: Reg) {
        self.push(STX | DW | MEM, dst, src, off, 0);
    }

    /// `if dst <cond> imm goto to` (`BPF_JMP_IMM`).
    pub fn jmp_imm(&mut self, cond: Cond, dst: Reg, imm: i32, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.push(JMP | K | cond as u8, dst, Reg(0), 0, imm);
    }

    /// `if dst <cond> src goto to` (`BPF_JMP_REG`).
    pub fn jmp_reg(&mut self, cond: Cond, dst: Reg, src: Reg, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.push(JMP | X | cond as u8, dst, src, 0, 0);
    }

    /// `goto to` (`BPF_JMP_A`).
    pub fn ja(&mut self, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.push(JMP | JA, Reg(0), Reg(0), 0, 0);
    }

    /// `return r0` (`BPF_EXIT_INSN`).
    pub fn exit(&mut self) {
        self.push(JMP | EXIT, Reg(0), Reg(0), 0, 0);
    }

    /// The finished program, every jump pointed at its label. Panics on
    /// a label never bound or a jump too long: both are mistakes in the
    /// program's source, found by its tests, never by traffic.
    pub fn finish(mut self) -> Vec<Insn> {
        for &(at, Label(l)) in &self.fixups {
            let target = self.labels[l].expect("every label is bound");
            // A jump counts from the instruction after it.
            let off = target as i64 - at as i64 - 1;
            self.insns[at].off = i16::try_from(off).expect("jump within 32K instructions");
        }
        self.insns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_the_kernel_headers_say() {
        let mut a = Asm::default();
        let back = a.label();
        a.bind(back);
        a.mov32_imm(R0, -1); // BPF_MOV32_IMM(R0, -1)
        a.alu64_reg(Alu::Xor, R9, R0); // BPF_ALU64_REG(BPF_XOR, R9, R0)
        a.ld_ind_b(R7, 0); // BPF_LD_IND(BPF_B, R7, 0)
        a.ldx_w(R1, R6, 0); // BPF_LDX_MEM(BPF_W, R1, R6, 0)
        a.stx_dw(R10, -8, R1); // BPF_STX_MEM(BPF_DW, R10, R1, -8)
        a.jmp_imm(Cond::Ne, R0, 10, back); // BPF_JMP_IMM(BPF_JNE, R0, 10, -6)
        a.ld_imm64(R1, 0x0000_0100_0000_01b3);
        a.exit();
        a.ldx_b(R2, R1, -432); // BPF_LDX_MEM(BPF_B, R2, R1, -432)
        a.st_dw(R10, -16, -2); // BPF_ST_MEM(BPF_DW, R10, -16, -2)
        a.alu64_imm(Alu::Neg, R2, 0); // BPF_ALU64_IMM(BPF_NEG, R2, 0)
        a.ld_ind_w(R7, 0); // BPF_LD_IND(BPF_W, R7, 0)
        a.alu32_reg(Alu::And, R1, R2); // BPF_ALU32_REG(BPF_AND, R1, R2)
        let p = a.finish();
        let bytes: Vec<[u8; 8]> = p
            .iter()
            .map(|i| {
                let mut b = [0u8; 8];
                b[0] = i.code;
                b[1] = i.regs;
                b[2..4].copy_from_slice(&i.off.to_le_bytes());
                b[4..].copy_from_slice(&i.imm.to_le_bytes());
                b
            })
            .collect();
        assert_eq!(bytes[0], [0xb4, 0x00, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(bytes[1], [0xaf, 0x09, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes[2], [0x50, 0x70, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes[3], [0x61, 0x61, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes[4], [0x7b, 0x1a, 0xf8, 0xff, 0, 0, 0, 0]);
        assert_eq!(bytes[5], [0x55, 0x00, 0xfa, 0xff, 10, 0, 0, 0]);
        assert_eq!(bytes[6], [0x18, 0x01, 0, 0, 0xb3, 0x01, 0, 0]);
        assert_eq!(bytes[7], [0x00, 0x00, 0, 0, 0x00, 0x01, 0, 0]);
        assert_eq!(bytes[8], [0x95, 0x00, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes[9], [0x71, 0x12, 0x50, 0xfe, 0, 0, 0, 0]);
        assert_eq!(bytes[10], [0x7a, 0x0a, 0xf0, 0xff, 0xfe, 0xff, 0xff, 0xff]);
        assert_eq!(bytes[11], [0x87, 0x02, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes[12], [0x40, 0x70, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes[13], [0x5c, 0x21, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn forward_jumps_count_from_the_next_instruction() {
        let mut a = Asm::default();
        let end = a.label();
        a.ja(end);
        a.mov32_imm(R0, 1);
        a.bind(end);
        a.exit();
        assert_eq!(a.finish()[0].off, 1);
    }
}
