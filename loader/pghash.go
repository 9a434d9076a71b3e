package loader

import "math/bits"

// hashBytesExtended is PostgreSQL's hash_bytes_extended (src/common/hashfn.c, Bob Jenkins'
// lookup3) as a little-endian server computes it: what hashtextextended(text, seed) returns
// for text under a deterministic collation, as an unsigned number.
func hashBytesExtended(k []byte, seed uint64) uint64 {
	a, b, c := lookup3Start(len(k), seed)
	for len(k) >= 12 {
		a += le32(k[0:4])
		b += le32(k[4:8])
		c += le32(k[8:12])
		a, b, c = mix(a, b, c)
		k = k[12:]
	}
	ta, tb, tc := tailWords(k)
	_, b, c = final(a+ta, b+tb, c+tc)
	return uint64(b)<<32 | uint64(c)
}

// hashBytesExtended2 is hashBytesExtended(k, 0) and hashBytesExtended(k, seed) in one pass
// over k: a reload digests every record with both, and the two independent states of a
// block mix side by side instead of reading the row text twice.
func hashBytesExtended2(k []byte, seed uint64) (h0, h1 uint64) {
	a0, b0, c0 := lookup3Start(len(k), 0)
	a1, b1, c1 := lookup3Start(len(k), seed)
	for len(k) >= 12 {
		wa, wb, wc := le32(k[0:4]), le32(k[4:8]), le32(k[8:12])
		a0, b0, c0 = mix(a0+wa, b0+wb, c0+wc)
		a1, b1, c1 = mix(a1+wa, b1+wb, c1+wc)
		k = k[12:]
	}
	ta, tb, tc := tailWords(k)
	_, b0, c0 = final(a0+ta, b0+tb, c0+tc)
	_, b1, c1 = final(a1+ta, b1+tb, c1+tc)
	return uint64(b0)<<32 | uint64(c0), uint64(b1)<<32 | uint64(c1)
}

// lookup3Start is the state before the first block of a key of n bytes.
func lookup3Start(n int, seed uint64) (a, b, c uint32) {
	a = 0x9e3779b9 + uint32(n) + 3923095
	b, c = a, a
	if seed != 0 {
		a += uint32(seed >> 32)
		b += uint32(seed)
		a, b, c = mix(a, b, c)
	}
	return a, b, c
}

// tailWords is what the last (up to 11) bytes add to the state: the block zero-padded, with
// c's word shifted up a byte, as lookup3 leaves c's lowest byte for the length.
func tailWords(k []byte) (a, b, c uint32) {
	var w [12]byte
	copy(w[:], k)
	return le32(w[0:4]), le32(w[4:8]), le32(w[8:12]) << 8
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func mix(a, b, c uint32) (uint32, uint32, uint32) {
	a -= c
	a ^= bits.RotateLeft32(c, 4)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 6)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 8)
	b += a
	a -= c
	a ^= bits.RotateLeft32(c, 16)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 19)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 4)
	b += a
	return a, b, c
}

func final(a, b, c uint32) (uint32, uint32, uint32) {
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	return a, b, c
}
