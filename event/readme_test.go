package event_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestREADMEExample: the consumer the README shows is the one in example_test.go, which the
// tests compile and run.
func TestREADMEExample(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "### Reading events in Go")
	if !ok {
		t.Fatal("README has no section Reading events in Go")
	}
	_, code, ok := strings.Cut(section, "```go\n")
	if ok {
		code, _, ok = strings.Cut(code, "```")
	}
	if !ok || !strings.Contains(code, "func follow(") {
		t.Fatal("the section has no Go block with func follow")
	}
	example, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(example), code) {
		t.Errorf("the README's example is not the code of example_test.go; copy it from there:\n%s", code)
	}
}
