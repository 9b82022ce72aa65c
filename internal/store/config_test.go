package store_test

import (
	"strings"
	"testing"

	"github.com/certpush/certpush/internal/store"
	"github.com/certpush/certpush/internal/yamlconf"
)

func TestParseYAML(t *testing.T) {
	testCases := []struct {
		desc  string
		src   string
		known []string
		want  string // "" for no error, else a part of it
		check func(t *testing.T, c *store.Config)
	}{
		{
			desc:  "s3 publisher",
			src:   "store:\n  url: s3://certs/prod\n  endpoint: http://127.0.0.1:7070\n  region: eu-west-1\n  path_style: true\n  recipients: [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]\n",
			known: store.PublisherKeys,
			check: func(t *testing.T, c *store.Config) {
				if c.URL != "s3://certs/prod" || !c.PathStyle || c.Region != "eu-west-1" || len(c.Recipients) != 1 {
					t.Errorf("got %+v", c)
				}
			},
		},
		{desc: "no url", src: "store:\n  region: x\n", known: store.NodeKeys, want: "f.yaml:2: store: url is missing"},
		{desc: "bad url", src: "store:\n  url: ftp://x\n", known: store.NodeKeys, want: `f.yaml:2: store.url: "ftp://x"`},
		{desc: "bad recipient", src: "store:\n  url: file:///srv/certs\n  recipients: [age1nope]\n", known: store.PublisherKeys, want: "f.yaml:3: store.recipients: recipient"},
		{desc: "identity is not the publisher's", src: "store:\n  url: file:///srv/certs\n  node_id: a\n", known: store.PublisherKeys, want: `unknown key "node_id"`},
		{desc: "bad node id", src: "store:\n  url: file:///srv/certs\n  node_id: a/b\n", known: store.NodeKeys, want: "f.yaml:3: store.node_id"},
		{desc: "credentials are refused", src: "store:\n  url: s3://b/p\n  secret_key: x\n", known: store.NodeKeys, want: `unknown key "secret_key"`},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			c := &yamlconf.Checker{File: "f.yaml"}
			root, ok := c.Document([]byte(tc.src))
			if !ok {
				t.Fatal(c.Err())
			}
			var cfg *store.Config
			for _, f := range c.Pairs(root, "") {
				cfg = store.ParseYAML(c, f.Val, "store", tc.known)
			}
			err := c.Err()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one with %q", err, tc.want)
			}
			if tc.check != nil {
				tc.check(t, cfg)
			}
		})
	}
}
