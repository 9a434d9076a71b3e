package config

import (
	"net/url"
	"regexp"
	"strings"
)

// Masked replaces a secret in printed configuration.
const Masked = "xxxxx"

// secretName matches flag names whose values are secrets themselves (not paths to them).
var secretName = regexp.MustCompile(`(?i)(password|passwd|secret|token|api-?key|private-key)`)

// IsSecretName reports whether a flag with this name holds a secret.
func IsSecretName(name string) bool { return secretName.MatchString(name) }

// MaskValue returns value fit for printing: fully masked when the flag's name says it is a
// secret, otherwise with any password inside a connection URL or keyword string masked.
func MaskValue(name, value string) string {
	if value == "" {
		return value
	}
	if IsSecretName(name) {
		return Masked
	}
	return MaskURL(value)
}

// keywordPassword matches password=… in a libpq keyword/value string, quoted or not.
var keywordPassword = regexp.MustCompile(`(?i)\b(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]*)`)

// MaskURL masks the passwords in a connection string: the password of every URL in a
// comma-separated list (postgres://user:pass@host → user:xxxxx@host), a bare NATS token
// (nats://token@host), password= in a query string or a libpq keyword/value string.
func MaskURL(s string) string {
	if !strings.Contains(s, "://") {
		return keywordPassword.ReplaceAllString(s, "${1}"+Masked)
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = maskOneURL(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

func maskOneURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		// Unparseable (a password with a stray '%'…): mask everything between :// and the last @.
		scheme, rest, ok := strings.Cut(s, "://")
		if at := strings.LastIndex(rest, "@"); ok && at >= 0 {
			user, _, _ := strings.Cut(rest[:at], ":")
			return scheme + "://" + user + ":" + Masked + rest[at:]
		}
		return keywordPassword.ReplaceAllString(s, "${1}"+Masked)
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Masked)
		} else if isNATSScheme(u.Scheme) && u.User.Username() != "" {
			// NATS reads a lone user part as an authentication token.
			u.User = url.User(Masked)
		}
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", Masked)
		u.RawQuery = q.Encode()
	}
	return strings.Replace(u.String(), url.QueryEscape(Masked), Masked, -1)
}

func isNATSScheme(s string) bool {
	switch strings.ToLower(s) {
	case "nats", "tls", "ws", "wss":
		return true
	}
	return false
}
