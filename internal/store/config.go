package store

import (
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/certpush/certpush/internal/yamlconf"
)

// Config is the store section of certpush.yaml or certnode.yaml.
type Config struct {
	URL       string // s3://bucket/prefix or file:///dir
	Endpoint  string // S3-compatible server's URL; "" for AWS
	Region    string
	PathStyle bool // path-style addressing (most S3-compatible servers)
	// Recipients (certpush) are the age recipients the private keys are
	// encrypted to: age X25519 (age1...) and SSH ed25519 / RSA public
	// keys, one a string.
	Recipients []string
	// Identity is the file holding the age identity or SSH private key
	// that decrypts: a node's keys (certnode), the shared ACME account
	// (certpush renew --lease); e.g. /etc/ssh/ssh_host_ed25519_key.
	Identity string
	// NodeID (certnode) names the node's report object; "" for the host
	// name.
	NodeID string
}

// Keys accepted in the store section by each program.
var (
	PublisherKeys = []string{"url", "endpoint", "region", "path_style", "recipients", "identity"}
	NodeKeys      = []string{"url", "endpoint", "region", "path_style", "identity", "node_id"}
)

// ParseYAML reads a store section (n, at key where) through c, accepting
// the keys in known. Problems are reported to c; the result is nil when
// the section is unusable.
func ParseYAML(c *yamlconf.Checker, n *yaml.Node, where string, known []string) *Config {
	cfg := &Config{}
	var urlNode *yaml.Node
	for _, f := range c.Pairs(n, where) {
		key := where + "." + f.Key.Value
		if !contains(known, f.Key.Value) {
			c.Unknown(f.Key, where, known)
			continue
		}
		switch f.Key.Value {
		case "url":
			urlNode = f.Val
			cfg.URL, _ = c.NonEmpty(f.Val, key)
		case "endpoint":
			cfg.Endpoint, _ = c.Text(f.Val, key)
		case "region":
			cfg.Region, _ = c.Text(f.Val, key)
		case "path_style":
			cfg.PathStyle, _ = c.Bool(f.Val, key)
		case "recipients":
			cfg.Recipients, _ = c.Strings(f.Val, key)
			for i, r := range cfg.Recipients {
				if _, err := ParseRecipient(r); err != nil {
					c.Errorf(yamlconf.Deref(f.Val).Content[i], "%s: %v", key, err)
				}
			}
		case "identity":
			cfg.Identity, _ = c.Path(f.Val, key)
		case "node_id":
			cfg.NodeID, _ = c.NonEmpty(f.Val, key)
			if CheckKey(cfg.NodeID) != nil || strings.Contains(cfg.NodeID, "/") {
				c.Errorf(yamlconf.Deref(f.Val), "%s: only letters, digits, '.', '-' and '_'", key)
			}
		}
	}
	if cfg.URL == "" {
		if n != nil {
			c.Errorf(yamlconf.Deref(n), "%s: url is missing (s3://bucket/prefix or file:///dir)", where)
		}
		return nil
	}
	if !strings.HasPrefix(cfg.URL, "s3://") && !strings.HasPrefix(cfg.URL, "file:///") {
		c.Errorf(yamlconf.Deref(urlNode), "%s.url: %q: want s3://bucket/prefix or file:///dir", where, cfg.URL)
	}
	return cfg
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
