package main

import (
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"text/tabwriter"

	"github.com/alecthomas/kong"
	"github.com/tidemark/tidemark/config"
)

// ConfigCmd is `tidemark config`.
type ConfigCmd struct {
	Print ConfigPrintCmd `cmd:"" help:"Print the effective configuration (secrets masked) and where each value comes from."`
}

// ConfigPrintCmd is `tidemark config print [--json]`.
type ConfigPrintCmd struct {
	JSON bool `help:"Print a JSON array on stdout."`
}

// Setting is one flag's effective value and where it came from.
type Setting struct {
	// Command is the sub-command the flag belongs to ("" for a global flag).
	Command string `json:"command,omitempty"`
	Flag    string `json:"flag"`
	Value   string `json:"value"`
	// Source is flag, env, file or default.
	Source string `json:"source"`
	Env    string `json:"env,omitempty"`
}

// Run prints every flag of every command with its effective value; secrets are masked.
func (c *ConfigPrintCmd) Run(kctx *kong.Context, g *Globals) error {
	var file *config.File
	if g.ConfigFile != "" {
		var err error
		if file, err = config.LoadFile(string(g.ConfigFile)); err != nil {
			return err
		}
	}
	settings := effectiveSettings(kctx, file)
	return printSettings(os.Stdout, settings, c.JSON)
}

func printSettings(w io.Writer, settings []Setting, asJSON bool) error {
	if asJSON {
		return printJSON(w, settings)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FLAG\tVALUE\tSOURCE")
	for _, s := range settings {
		name := "--" + s.Flag
		if s.Command != "" {
			name = s.Command + " " + name
		}
		src := s.Source
		if s.Source == "env" {
			src += " (" + s.Env + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", name, s.Value, src)
	}
	return tw.Flush()
}

// effectiveSettings walks every flag of the model. Flags of the running command (and the global
// ones) hold their final value; for other commands' flags, which kong did not resolve, the file's
// value is looked up the way the resolver would.
func effectiveSettings(kctx *kong.Context, file *config.File) []Setting {
	onPath := map[*kong.Flag]*kong.Path{}
	resolvedNode := map[*kong.Node]bool{}
	for _, p := range kctx.Path {
		if p.Flag != nil {
			onPath[p.Flag] = p
		}
		if n := p.Node(); n != nil {
			resolvedNode[n] = true
		}
	}
	var out []Setting
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		for _, f := range n.Flags {
			if f.Name == "help" || f.Name == "version" {
				continue
			}
			s := Setting{Command: commandPath(n), Flag: f.Name, Source: "default"}
			if len(f.Envs) > 0 {
				s.Env = f.Envs[0]
			}
			value := formatValue(f.Target)
			switch p, ok := onPath[f]; {
			case ok && p.Resolved:
				s.Source = "file"
			case ok:
				s.Source = "flag"
			case config.EnvSet(f):
				s.Source = "env"
				for _, e := range f.Envs {
					if _, set := os.LookupEnv(e); set {
						s.Env = e
						break
					}
				}
			case file != nil:
				if v, found := file.Lookup(n, f); found {
					s.Source = "file"
					if !resolvedNode[n] {
						value = fmt.Sprint(v)
					}
				}
			}
			if s.Source != "env" {
				s.Env = ""
			}
			s.Value = config.MaskValue(f.Name, value)
			out = append(out, s)
		}
		for _, child := range n.Children {
			walk(child)
		}
	}
	walk(kctx.Model.Node)
	return out
}

func commandPath(n *kong.Node) string {
	var parts []string
	for ; n != nil && n.Type != kong.ApplicationNode; n = n.Parent {
		parts = append([]string{n.Name}, parts...)
	}
	return strings.Join(parts, " ")
}

func formatValue(v reflect.Value) string {
	if !v.IsValid() {
		return ""
	}
	if v.Kind() == reflect.Slice {
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = fmt.Sprint(v.Index(i).Interface())
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v.Interface())
}
