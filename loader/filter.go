package loader

import "hash/maphash"

// skuFilter is a Bloom filter of the skus seen so far. It proves most drops free of duplicate
// skus while they stream, in fixed memory, so the database need not check. A "maybe seen"
// (a real duplicate, or rarely a false positive) only makes the database check.
type skuFilter struct {
	seed maphash.Seed
	bits []uint64
}

const filterHashes = 5

// filterBits is the filter's size: 16 MiB keeps false positives rare up to a few million skus.
// Tests shrink it to provoke false positives.
var filterBits uint64 = 1 << 27

func newSKUFilter() *skuFilter {
	return &skuFilter{seed: maphash.MakeSeed(), bits: make([]uint64, (filterBits+63)/64)}
}

// add records sku and reports whether it may have been seen before.
func (f *skuFilter) add(sku string) bool {
	h := maphash.String(f.seed, sku)
	h1, h2 := h, h>>33|h<<31|1
	seen := true
	for i := uint64(0); i < filterHashes; i++ {
		bit := (h1 + i*h2) % filterBits
		w, m := bit/64, uint64(1)<<(bit%64)
		if f.bits[w]&m == 0 {
			seen = false
			f.bits[w] |= m
		}
	}
	return seen
}
