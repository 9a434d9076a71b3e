package encoder

import (
	"strings"
	"testing"
	"time"
)

// TestConfigDefaults: a zero field takes DefaultConfig's value, a negative one is an error
// naming its flag, never silently replaced.
func TestConfigDefaults(t *testing.T) {
	var c Config
	if err := c.defaults(); err != nil {
		t.Fatal(err)
	}
	if c != DefaultConfig() {
		t.Errorf("zero config: %+v, want DefaultConfig %+v", c, DefaultConfig())
	}
	c = Config{Workers: 5, BatchWait: time.Second}
	if err := c.defaults(); err != nil || c.Workers != 5 || c.BatchWait != time.Second || c.Batch != DefaultConfig().Batch {
		t.Errorf("set fields are kept, zero ones defaulted: %+v %v", c, err)
	}
	for _, tc := range []struct {
		cfg  Config
		flag string
	}{
		{Config{Workers: -1}, "--workers"},
		{Config{Batch: -1}, "--batch"},
		{Config{BatchWait: -time.Second}, "--batch-wait"},
		{Config{AckWait: -time.Second}, "--ack-wait"},
		{Config{MaxDeliver: -1}, "--max-deliver"},
		{Config{MaxDeliver: 1}, "--max-deliver"},
		{Config{MaxAckPending: -1}, "--max-ack-pending"},
		{Config{ExitIdle: -time.Second}, "--exit-idle"},
		// Settings without a flag are named by their field.
		{Config{NakDelay: -time.Second}, "Config.NakDelay"},
		{Config{ShutdownGrace: -time.Second}, "Config.ShutdownGrace"},
		{Config{StreamWait: -time.Second}, "Config.StreamWait"},
	} {
		if err := tc.cfg.defaults(); err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%+v: err = %v, want one naming %s", tc.cfg, err, tc.flag)
		}
	}
}
