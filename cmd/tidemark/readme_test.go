package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

// The README documents every command and every flag: a flag added without a word in the README
// fails here.
func TestREADMECoversCommandsAndFlags(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(readme)
	var cli CLI
	parser, err := newParser(&cli)
	if err != nil {
		t.Fatal(err)
	}
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		if n.Type == kong.CommandNode && len(n.Children) == 0 {
			if path := n.FullPath(); !strings.Contains(doc, "`"+strings.TrimPrefix(path, "tidemark ")) {
				t.Errorf("README does not mention the command %q", path)
			}
		}
		for _, f := range n.Flags {
			if f.Name == "help" {
				continue
			}
			documented := strings.Contains(doc, "`--"+f.Name) || strings.Contains(doc, "--"+f.Name+" ") ||
				(f.Short != 0 && strings.Contains(doc, "`-"+string(f.Short)))
			if !documented {
				t.Errorf("README does not mention --%s (%s)", f.Name, n.FullPath())
			}
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(parser.Model.Node)
}
