package setting

import (
	"strings"
	"testing"
	"time"
)

func TestDefault(t *testing.T) {
	var errs []error
	zero, set, neg := 0, 5, -time.Second
	Default(&errs, "--a", &zero, 7)
	Default(&errs, "--b", &set, 7)
	Default(&errs, "--c", &neg, time.Minute)
	if zero != 7 || set != 5 || neg != -time.Second {
		t.Errorf("zero %d, set %d, negative %s: want 7, 5 and the negative kept", zero, set, neg)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "--c -1s") {
		t.Errorf("errors %v, want one naming --c", errs)
	}
}
