package push

import (
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestMatchHost(t *testing.T) {
	hashed := knownhosts.HashHostname("[a.example.com]:2222")
	testCases := []struct {
		desc     string
		host     string
		patterns string
		want     bool
	}{
		{desc: "name", host: "a.example.com", patterns: "a.example.com", want: true},
		{desc: "case", host: "A.Example.COM", patterns: "a.example.com", want: true},
		{desc: "one of a list", host: "b.example.com", patterns: "a.example.com,b.example.com", want: true},
		{desc: "other name", host: "b.example.com", patterns: "a.example.com", want: false},
		{desc: "suffix wildcard", host: "a.example.com", patterns: "*.example.com", want: true},
		{desc: "wildcard needs a dot", host: "example.com", patterns: "*.example.com", want: false},
		{desc: "wildcard, other domain", host: "a.example.org", patterns: "*.example.com", want: false},
		{desc: "question mark", host: "node1.example.com", patterns: "node?.example.com", want: true},
		{desc: "question mark is one character", host: "node10.example.com", patterns: "node?.example.com", want: false},
		{desc: "star matches all", host: "[127.0.0.1]:2222", patterns: "*", want: true},
		{desc: "port", host: "[127.0.0.1]:2222", patterns: "[127.0.0.1]:2222", want: true},
		{desc: "port is part of the name", host: "[127.0.0.1]:2222", patterns: "127.0.0.1", want: false},
		{desc: "other port", host: "[127.0.0.1]:2223", patterns: "[127.0.0.1]:2222", want: false},
		{desc: "brackets are literal", host: "1", patterns: "[127.0.0.1]:2222", want: false},
		{desc: "wildcard with port", host: "[a.example.com]:2222", patterns: "[*.example.com]:2222", want: true},
		{desc: "wildcard without port", host: "[a.example.com]:2222", patterns: "*.example.com", want: false},
		{desc: "negation excludes", host: "bad.example.com", patterns: "*.example.com,!bad.example.com", want: false},
		{desc: "negation first", host: "bad.example.com", patterns: "!bad.example.com,*.example.com", want: false},
		{desc: "negation spares others", host: "good.example.com", patterns: "*.example.com,!bad.example.com", want: true},
		{desc: "negation alone matches nothing", host: "good.example.com", patterns: "!bad.example.com", want: false},
		{desc: "negated wildcard", host: "[127.0.0.1]:2222", patterns: "*,![127.0.0.1]:*", want: false},
		{desc: "hashed", host: "[a.example.com]:2222", patterns: hashed, want: true},
		{desc: "hashed, case", host: "[A.example.com]:2222", patterns: hashed, want: true},
		{desc: "hashed, other name", host: "[b.example.com]:2222", patterns: hashed, want: false},
		{desc: "hashed, other port", host: "a.example.com", patterns: hashed, want: false},
		{desc: "bad hash", host: "a.example.com", patterns: "|1|zzz|yyy", want: false},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			if got := matchHost(tc.host, tc.patterns); got != tc.want {
				t.Errorf("matchHost(%q, %q) = %v, want %v", tc.host, tc.patterns, got, tc.want)
			}
		})
	}
}

// A line applies to host:port when it matches [host]:port or, as in
// OpenSSH, the bare host.
func TestLookupNames(t *testing.T) {
	testCases := []struct {
		desc, address, patterns string
		want                    bool
	}{
		{desc: "port 22", address: "a.example.com:22", patterns: "a.example.com", want: true},
		{desc: "port 22, bracketed", address: "a.example.com:22", patterns: "[a.example.com]:22", want: false},
		{desc: "other port, bracketed", address: "a.example.com:2222", patterns: "[a.example.com]:2222", want: true},
		{desc: "other port, bare name", address: "a.example.com:2222", patterns: "a.example.com", want: true},
		{desc: "bracketed, wrong port", address: "a.example.com:2222", patterns: "[a.example.com]:2223", want: false},
		{desc: "bare name negated", address: "a.example.com:2222", patterns: "*,!a.example.com", want: true},
		{desc: "both negated", address: "a.example.com:2222", patterns: "*,!a.example.com,![a.example.com]:*", want: false},
		{desc: "IPv6", address: "[::1]:2222", patterns: "::1", want: true},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			if got := lookupNames(tc.address).match(tc.patterns); got != tc.want {
				t.Errorf("%v match %q = %v, want %v", lookupNames(tc.address), tc.patterns, got, tc.want)
			}
		})
	}
}

func TestParseKnownHosts(t *testing.T) {
	key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(newSigner(t, "ed25519").PublicKey())))
	file := strings.Join([]string{
		"# comment",
		"",
		"a.example.com " + key + " a comment",  // 3
		"@cert-authority *.example.com " + key, // 4
		"@revoked * " + key,                    // 5
		"b.example.com ssh-ed25519 AAAA%%%notbase64",                // 6
		"@cert-authorty *.example.com " + key,                       // 7
		"c.example.com ssh-ed25519",                                 // 8
		"@revoked d.example.com",                                    // 9
		"e.example.com ssh-rsa " + strings.Fields(key)[1],           // 10
		"|1|bad|hash " + key,                                        // 11
		"  " + knownhosts.HashHostname("f.example.com") + " " + key, // 12
	}, "\n")
	good, bad, err := parseKnownHosts(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	var goodLines []int
	for _, l := range good {
		goodLines = append(goodLines, l.line)
	}
	if want := []int{3, 4, 5, 12}; !slices.Equal(goodLines, want) {
		t.Errorf("good lines %v, want %v", goodLines, want)
	}
	if good[1].marker != markerAuthority || good[2].marker != markerRevoked || good[0].marker != markerNone {
		t.Errorf("markers %q %q %q", good[0].marker, good[1].marker, good[2].marker)
	}
	wantBad := []struct {
		line    int
		why     string
		revokes bool
		pattern string
	}{
		{6, "bad base64", false, "b.example.com"},
		{7, "unknown marker", true, "*.example.com"},
		{8, "too few fields", false, "c.example.com"},
		{9, "too few fields", true, "d.example.com"},
		{10, "does not match", false, "e.example.com"},
		{11, "bad hashed host", false, "|1|bad|hash"},
	}
	if len(bad) != len(wantBad) {
		t.Fatalf("bad lines %+v, want %d", bad, len(wantBad))
	}
	for i, w := range wantBad {
		b := bad[i]
		if b.line != w.line || !strings.Contains(b.why, w.why) || b.revokes != w.revokes || b.patterns != w.pattern {
			t.Errorf("bad line %+v, want %+v", b, w)
		}
	}
}
