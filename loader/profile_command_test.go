package loader_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/loader"
)

// TestCommandShapesWithStoredProfiles is the daily run from the built binary: each shape's
// profile is stored with its supplier once, then `tidemark load --supplier ID FILE` takes the
// drop with no other flag. A second supplier's profile comes from --detect's output, saved
// as it is.
func TestCommandShapesWithStoredProfiles(t *testing.T) {
	const n = 80
	pool, url := newDB(t)
	dir := t.TempDir()
	exts := []string{".csv", ".txt", ".csv", ".xlsx"}
	for i, s := range shapes {
		t.Run(s.name, func(t *testing.T) {
			stored, detected, fromCSV := int32(300+3*i), int32(301+3*i), int32(302+3*i)
			ps := shapeProducts(n)
			header, rows := s.model(ps)
			drop := filepath.Join(dir, fmt.Sprintf("drop%d%s", i, exts[i]))
			if err := os.WriteFile(drop, s.write(t, header, rows), 0o644); err != nil {
				t.Fatal(err)
			}
			profile := filepath.Join(dir, fmt.Sprintf("profile%d.yaml", i))
			if err := os.WriteFile(profile, []byte(s.profile), 0o644); err != nil {
				t.Fatal(err)
			}
			run := func(stdin string, args ...string) string {
				t.Helper()
				stdout, stderr, code := tidemark(t, dir, strings.NewReader(stdin), append(args[:1:1], append([]string{"--pg-url", url}, args[1:]...)...)...)
				if code != 0 {
					t.Fatalf("tidemark %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
				}
				return stdout
			}
			run("", "supplier", "add", fmt.Sprint(stored))
			run("", "supplier", "profile", "set", fmt.Sprint(stored), profile)
			if got := run("", "supplier", "profile", "show", fmt.Sprint(stored)); got != s.profile {
				t.Fatalf("profile show printed\n%s\nwant it as set\n%s", got, s.profile)
			}
			sum := parseSummary(t, run("", "load", "--supplier", fmt.Sprint(stored), "--json", drop))
			if sum.Inserted != n || sum.Rejected != 1 {
				t.Fatalf("load with the stored profile: %+v", sum)
			}

			proposal := run("", "load", "--detect", drop)
			run("", "supplier", "add", fmt.Sprint(detected))
			run(proposal, "supplier", "profile", "set", fmt.Sprint(detected), "-")
			if sum := parseSummary(t, run("", "load", "--supplier", fmt.Sprint(detected), "--json", drop)); sum.Inserted != n {
				t.Fatalf("load with the detected profile: %+v\n%s", sum, proposal)
			}

			mustLoad(t, pool, loader.CSV, expectedCSV(t, ps, header, rows, s, mustProfile(t, s.profile)), loader.Options{Supplier: fromCSV, MaxRejects: -1})
			sameProducts(t, pool, stored, fromCSV)
			// A second run of the same drop writes nothing.
			if sum := parseSummary(t, run("", "load", "--supplier", fmt.Sprint(stored), "--json", drop)); sum.Unchanged != n || sum.Inserted+sum.Updated != 0 {
				t.Fatalf("reload: %+v", sum)
			}
		})
	}
}

// TestCommandProfileErrors: a profile that cannot work is refused when it is set, and the
// flags a one-off gives override the stored profile.
func TestCommandProfileErrors(t *testing.T) {
	pool, url := newDB(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("delimeter: ';'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"supplier", "profile", "set", "8", bad}, "field delimeter not found"},
		{[]string{"supplier", "profile", "show", "8"}, "has no drop profile"},
		{[]string{"load", "--supplier", "8", "--column", "Prijs", "-"}, `--column "Prijs": want NAME=VALUE`},
		{[]string{"load", "--supplier", "8", "--constant", "currency=EURO", "-"}, `currency: not 3 letters`},
		{[]string{"load", "-"}, "--supplier is required"},
	} {
		args := append(tc.args[:1:1], append([]string{"--pg-url", url}, tc.args[1:]...)...)
		_, stderr, code := tidemark(t, dir, strings.NewReader("sku,name\nA,a\n"), args...)
		if code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("tidemark %s: exit %d, stderr %q; want exit 1 and %q", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
	if _, _, code := tidemark(t, dir, nil, "supplier", "add", "--pg-url", url, "8"); code != 0 {
		t.Fatal("supplier add failed")
	}
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("delimiter: ';'\ncolumns: {Artikelnummer: sku, Naam: name}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := tidemark(t, dir, nil, "supplier", "profile", "set", "--pg-url", url, "8", good); code != 0 {
		t.Fatal(stderr)
	}
	// One-off flags on top: a decimal comma and a constant currency, for this load only.
	stdout, stderr, code := tidemark(t, dir, strings.NewReader("Artikelnummer;Naam;Prijs\nA-1;Appel;1,50\n"),
		"load", "--pg-url", url, "--supplier", "8", "--json", "--column", "Prijs=price", "--decimal", ",", "--constant", "currency=eur", "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if s := parseSummary(t, stdout); s.Inserted != 1 {
		t.Fatalf("summary %+v", s)
	}
	if p := products(t, pool, 8)["A-1"]; p.Name != "Appel" || str(p.Price) != "1.50" || str(p.Currency) != "EUR" {
		t.Fatalf("product %+v", p)
	}
	if _, stderr, code := tidemark(t, dir, nil, "supplier", "profile", "clear", "--pg-url", url, "8"); code != 0 {
		t.Fatal(stderr)
	}
	_, stderr, code = tidemark(t, dir, strings.NewReader("Artikelnummer;Naam\nA-1;Appel\n"), "load", "--pg-url", url, "--supplier", "8", "-")
	if code != 1 || !strings.Contains(stderr, `looks ";"-separated`) {
		t.Fatalf("after clear: exit %d, %s", code, stderr)
	}
}
