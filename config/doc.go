// Package config holds the option structs shared by tidemark's commands, with their kong tags
// and defaults in one place. Every flag is also read from TIDEMARK_<FLAG> and from the YAML
// file named by --config (keys as the flag names).
package config
