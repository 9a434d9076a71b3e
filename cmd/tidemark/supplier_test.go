package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/catalog"
	"github.com/tidemark/tidemark/internal/testenv"
)

// The commands whose Run takes the pool main opens: migrate, supplier add (twice, the second
// a rename), supplier list as JSON and as a table, profile show of a supplier without one;
// and, against a server that is not there, the error that names it.
func TestSupplierCommands(t *testing.T) {
	t.Parallel()
	url := testenv.Database(t)
	const noNATS = "nats://127.0.0.1:1" // checkpoint show, the one that talks to NATS, fails before
	run := func(args ...string) string {
		t.Helper()
		stdout, stderr, code := runTidemark(t, url, noNATS, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, code, stderr)
		}
		return stdout
	}
	run("migrate")
	run("supplier", "add", "4", "--name", "Acme")
	run("supplier", "add", "4", "--name", "Acme Tools")
	var list []catalog.Supplier
	if out := run("supplier", "list", "--json"); json.Unmarshal([]byte(out), &list) != nil ||
		len(list) != 1 || list[0].ID != 4 || list[0].Name != "Acme Tools" || list[0].Partition != catalog.PartitionName(4) {
		t.Fatalf("supplier list --json: %s", out)
	}
	if out := run("supplier", "list"); !strings.Contains(out, "Acme Tools") || !strings.Contains(out, catalog.PartitionName(4)) {
		t.Fatalf("supplier list:\n%s", out)
	}
	if _, stderr, code := runTidemark(t, url, noNATS, "supplier", "profile", "show", "4"); code != 1 || !strings.Contains(stderr, "supplier 4 has no drop profile") {
		t.Fatalf("profile show of a supplier without one: exit %d\n%s", code, stderr)
	}

	const gone = "postgres://tidemark@127.0.0.1:1/none" // port 1: nothing listens there
	for _, args := range [][]string{{"migrate"}, {"supplier", "list"}, {"supplier", "add", "5"}, {"supplier", "profile", "show", "5"}, {"checkpoint", "show"}} {
		if _, stderr, code := runTidemark(t, gone, noNATS, args...); code != 1 || !strings.Contains(stderr, "connect to postgres "+gone) {
			t.Errorf("%v without a server: exit %d, want 1 and the server named:\n%s", args, code, stderr)
		}
	}
}
