package config

import "testing"

func TestMaskValue(t *testing.T) {
	tests := []struct {
		flag, in, want string
	}{
		{"pg-url", "postgres://tidemark:s3cret@db:5432/app?sslmode=require", "postgres://tidemark:xxxxx@db:5432/app?sslmode=require"},
		{"pg-url", "postgres://tidemark@db/app", "postgres://tidemark@db/app"},
		{"pg-url", "postgresql://u:p%40ss@db/app", "postgresql://u:xxxxx@db/app"},
		{"pg-url", "postgres://db/app?user=u&password=hunter2", "postgres://db/app?password=xxxxx&user=u"},
		{"pg-url", "host=db user=u password=hunter2 dbname=app", "host=db user=u password=xxxxx dbname=app"},
		{"pg-url", "host=db password='with space' dbname=app", "host=db password=xxxxx dbname=app"},
		{"pg-url", "host=db PASSWORD = bare sslmode=verify-full", "host=db PASSWORD = xxxxx sslmode=verify-full"},
		{"pg-url", "postgres://u:bad%zz@db/app", "postgres://u:xxxxx@db/app"},
		{"nats-url", "nats://a:pw@n1:4222,nats://a:pw@n2:4222", "nats://a:xxxxx@n1:4222,nats://a:xxxxx@n2:4222"},
		{"nats-url", "nats://n1:4222, nats://n2:4222", "nats://n1:4222,nats://n2:4222"},
		{"nats-url", "tls://s3cr3tt0ken@n1:4222", "tls://xxxxx@n1:4222"},
		{"nats-url", "nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"openai-api-key", "sk-123", "xxxxx"},
		{"api-key", "sk-123", "xxxxx"},
		{"nats-password", "pw", "xxxxx"},
		{"client-secret", "pw", "xxxxx"},
		{"auth-token", "pw", "xxxxx"},
		{"api-key", "", ""},
		{"nats-key", "/etc/tidemark/client.key", "/etc/tidemark/client.key"}, // a path, not key material
		{"log-level", "info", "info"},
	}
	for _, tt := range tests {
		if got := MaskValue(tt.flag, tt.in); got != tt.want {
			t.Errorf("MaskValue(%q, %q) = %q, want %q", tt.flag, tt.in, got, tt.want)
		}
	}
}
