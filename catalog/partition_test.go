package catalog_test

import (
	"math"
	"testing"

	"github.com/tidemark/tidemark/catalog"
)

// TestPartitionSupplier: PartitionSupplier reads back every name PartitionName builds, and
// nothing else.
func TestPartitionSupplier(t *testing.T) {
	for _, id := range []int32{1, 42, math.MaxInt32} {
		if got, ok := catalog.PartitionSupplier(catalog.PartitionName(id)); !ok || got != id {
			t.Errorf("PartitionSupplier(PartitionName(%d)) = %d, %v", id, got, ok)
		}
	}
	for _, table := range []string{"products", "", "products_s", "products_s0", "products_s-1", "products_sx", "products_s2147483648", "product_embeddings_s1"} {
		if id, ok := catalog.PartitionSupplier(table); ok {
			t.Errorf("PartitionSupplier(%q) = %d, want not a partition", table, id)
		}
	}
}
