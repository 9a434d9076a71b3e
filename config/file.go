package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/alecthomas/kong"
	"gopkg.in/yaml.v3"
)

// File is a YAML configuration file. Keys are flag names (`pg-url: postgres://…`); a command's
// own flags may also sit under the command's name (`replicate: {http-addr: ":9464"}`) or be
// spelled flat (`replicate-http-addr`), and a bare flag name applies to every command that has
// the flag. The more specific spelling wins.
//
// As a [kong.Resolver] it fills only flags that were neither given on the command line nor set
// in their TIDEMARK_* environment variable: kong applies environment variables together with
// defaults and runs resolvers afterwards, so without that check the file would override the
// environment. The precedence is flags > environment > file > defaults.
type File struct {
	Path   string
	values map[string]any
}

var _ kong.Resolver = (*File)(nil)

// LoadFile reads and parses the YAML file at path. An empty file is an empty configuration.
func LoadFile(path string) (*File, error) {
	f, err := os.Open(kong.ExpandPath(path))
	if err != nil {
		return nil, fmt.Errorf("open config file: %w", err)
	}
	defer f.Close()
	return ParseFile(path, f)
}

// ParseFile parses YAML configuration from r; path names it in errors.
func ParseFile(path string, r io.Reader) (*File, error) {
	values := map[string]any{}
	if err := yaml.NewDecoder(r).Decode(&values); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return &File{Path: path, values: values}, nil
}

// notFromFile are flags a configuration file never sets.
var notFromFile = map[string]bool{"help": true, "version": true, "config": true}

// Lookup returns the file's value for flag, which belongs to node, and whether the file sets it.
func (f *File) Lookup(node *kong.Node, flag *kong.Flag) (any, bool) {
	if notFromFile[flag.Name] {
		return nil, false
	}
	var cmds []string
	for n := node; n != nil && n.Type != kong.ApplicationNode; n = n.Parent {
		cmds = append([]string{n.Name}, cmds...)
	}
	for i := len(cmds); i >= 0; i-- {
		prefix := cmds[:i]
		if v, ok := nested(f.values, append(append([]string(nil), prefix...), flag.Name)); ok {
			return v, true
		}
		if i > 0 {
			if v, ok := f.values[strings.Join(append(append([]string(nil), prefix...), flag.Name), "-")]; ok && v != nil {
				return v, true
			}
		}
	}
	return nil, false
}

func nested(m map[string]any, keys []string) (any, bool) {
	for i, k := range keys {
		v, ok := m[k]
		if !ok || v == nil {
			return nil, false
		}
		if i == len(keys)-1 {
			if _, isMap := v.(map[string]any); isMap {
				return nil, false // a command section, not a value
			}
			return v, true
		}
		if m, ok = v.(map[string]any); !ok {
			return nil, false
		}
	}
	return nil, false
}

// Resolve implements [kong.Resolver].
func (f *File) Resolve(_ *kong.Context, parent *kong.Path, flag *kong.Flag) (any, error) {
	if EnvSet(flag) {
		return nil, nil
	}
	v, ok := f.Lookup(parent.Node(), flag)
	if !ok {
		return nil, nil
	}
	return v, nil
}

// EnvSet reports whether one of flag's environment variables is set (even to ""), which is
// when kong takes the flag's value from the environment.
func EnvSet(flag *kong.Flag) bool {
	for _, env := range flag.Envs {
		if _, ok := os.LookupEnv(env); ok {
			return true
		}
	}
	return false
}

// Validate rejects keys that name no flag or command, so a typo (`pg_url:`) is an error rather
// than a setting silently ignored.
func (f *File) Validate(app *kong.Application) error {
	var unknown []string
	f.validate(f.values, app.Node, "", &unknown)
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("config file %s: unknown keys %s (keys are flag names, e.g. pg-url)", f.Path, strings.Join(unknown, ", "))
	}
	return nil
}

func (f *File) validate(m map[string]any, node *kong.Node, where string, unknown *[]string) {
	for key, v := range m {
		if child := childNamed(node, key); child != nil {
			if sub, ok := v.(map[string]any); ok {
				f.validate(sub, child, where+key+".", unknown)
				continue
			}
		}
		if !knownKey(node, key, "") {
			*unknown = append(*unknown, where+key)
		}
	}
}

func childNamed(node *kong.Node, name string) *kong.Node {
	for _, c := range node.Children {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// knownKey reports whether key is a flag of node or of a command below it, bare or prefixed by
// the command names between node and the flag's command.
func knownKey(node *kong.Node, key, prefix string) bool {
	for _, fl := range node.Flags {
		if key == fl.Name || key == prefix+fl.Name {
			return true
		}
	}
	for _, c := range node.Children {
		if knownKey(c, key, prefix+c.Name+"-") {
			return true
		}
	}
	return false
}

// FileFlag is the --config flag: the named YAML file becomes a resolver for the rest of the
// flags. It works from TIDEMARK_CONFIG too (kong runs the hook for flags set from the environment).
type FileFlag string

// BeforeResolve loads the file and adds it as a resolver.
func (c FileFlag) BeforeResolve(kctx *kong.Context, trace *kong.Path) error {
	path, _ := kctx.FlagValue(trace.Flag).(FileFlag)
	if path == "" {
		return nil
	}
	f, err := LoadFile(string(path))
	if err != nil {
		return err
	}
	kctx.AddResolver(f)
	return nil
}
