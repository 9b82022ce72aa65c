package push

import (
	"bytes"
	"crypto/rand"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostCert signs hostKey's public key as a host certificate for
// 127.0.0.1, valid from an hour ago for a day; change may alter it
// before it is signed. It returns a signer that presents the certificate.
func hostCert(t *testing.T, ca, hostKey ssh.Signer, change func(*ssh.Certificate)) ssh.Signer {
	t.Helper()
	now := time.Now()
	cert := &ssh.Certificate{
		Key:             hostKey.PublicKey(),
		CertType:        ssh.HostCert,
		KeyId:           "test host",
		ValidPrincipals: []string{"127.0.0.1"},
		ValidAfter:      uint64(now.Add(-time.Hour).Unix()),
		ValidBefore:     uint64(now.Add(24 * time.Hour).Unix()),
	}
	if change != nil {
		change(cert)
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewCertSigner(cert, hostKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// authorizedLine is "type base64" of k.
func authorizedLine(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func writeFile(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Each case is one host presenting a certificate (or a plain key) and one
// known_hosts file; accepted or refused as ssh -o StrictHostKeyChecking=yes
// would.
func TestHostCertificates(t *testing.T) {
	client := newSigner(t, "ed25519")
	ca, otherCA := newSigner(t, "ed25519"), newSigner(t, "ecdsa")
	hostKey := newSigner(t, "ed25519")
	caLine := func(pattern string, k ssh.Signer) string {
		return "@cert-authority " + pattern + " " + authorizedLine(k.PublicKey())
	}
	past := func(c *ssh.Certificate) {
		c.ValidAfter = uint64(time.Now().Add(-48 * time.Hour).Unix())
		c.ValidBefore = uint64(time.Now().Add(-24 * time.Hour).Unix())
	}
	testCases := []struct {
		desc   string
		signer ssh.Signer // what the host presents
		known  func(addr string) []string
		want   error  // nil: accepted
		why    string // in the refusal
	}{
		{desc: "right CA", signer: hostCert(t, ca, hostKey, nil),
			known: func(string) []string { return []string{caLine("*", ca)} }},
		{desc: "CA for the host and port", signer: hostCert(t, ca, hostKey, nil),
			known: func(addr string) []string { return []string{caLine(knownhosts.Normalize(addr), ca)} }},
		{desc: "CA for all loopback ports", signer: hostCert(t, ca, hostKey, nil),
			known: func(string) []string { return []string{caLine("[127.0.0.1]:*", ca)} }},
		{desc: "hashed CA line", signer: hostCert(t, ca, hostKey, nil),
			known: func(addr string) []string {
				return []string{caLine(knownhosts.HashHostname(knownhosts.Normalize(addr)), ca)}
			}},
		{desc: "second CA line matches", signer: hostCert(t, ca, hostKey, nil),
			known: func(string) []string { return []string{caLine("*", otherCA), caLine("*", ca)} }},
		{desc: "no principals: any host", signer: hostCert(t, ca, hostKey, func(c *ssh.Certificate) { c.ValidPrincipals = nil }),
			known: func(string) []string { return []string{caLine("*", ca)} }},
		{desc: "CA for the name, any port", signer: hostCert(t, ca, hostKey, nil),
			known: func(string) []string { return []string{caLine("127.0.0.1", ca)} }},
		{desc: "port negated, name listed", signer: hostCert(t, ca, hostKey, nil),
			known: func(string) []string { return []string{caLine("127.0.0.1,![127.0.0.1]:*", ca)} }},
		{desc: "no validity limit", signer: hostCert(t, ca, hostKey, func(c *ssh.Certificate) { c.ValidAfter, c.ValidBefore = 0, ssh.CertTimeInfinity }),
			known: func(string) []string { return []string{caLine("*", ca)} }},

		{desc: "wrong CA", signer: hostCert(t, otherCA, hostKey, nil),
			known: func(string) []string { return []string{caLine("*", ca)} },
			want:  ErrHostCertInvalid, why: "wrong CA: it is signed by " + ssh.FingerprintSHA256(otherCA.PublicKey())},
		{desc: "CA for another host", signer: hostCert(t, ca, hostKey, nil),
			known: func(string) []string { return []string{caLine("*.example.com,127.0.0.2,[127.0.0.1]:1", ca)} },
			want:  ErrUnknownHost, why: "no @cert-authority line for this host"},
		{desc: "CA with the host negated", signer: hostCert(t, ca, hostKey, nil),
			known: func(string) []string { return []string{caLine("*,![127.0.0.1]:*,!127.0.0.1", ca)} },
			want:  ErrUnknownHost, why: "no @cert-authority line for this host"},
		{desc: "wrong principal", signer: hostCert(t, ca, hostKey, func(c *ssh.Certificate) { c.ValidPrincipals = []string{"db.example.com", "127.0.0.2"} }),
			known: func(string) []string { return []string{caLine("*", ca)} },
			want:  ErrHostCertInvalid, why: `wrong principal: it is for ["db.example.com" "127.0.0.2"], not "127.0.0.1"`},
		{desc: "wildcard principal", signer: hostCert(t, ca, hostKey, func(c *ssh.Certificate) { c.ValidPrincipals = []string{"127.0.0.*"} }),
			known: func(string) []string { return []string{caLine("*", ca)} },
			want:  ErrHostCertInvalid, why: "wrong principal"},
		{desc: "expired", signer: hostCert(t, ca, hostKey, past),
			known: func(string) []string { return []string{caLine("*", ca)} },
			want:  ErrHostCertInvalid, why: "expired at"},
		{desc: "not yet valid", signer: hostCert(t, ca, hostKey, func(c *ssh.Certificate) { c.ValidAfter = uint64(time.Now().Add(time.Hour).Unix()) }),
			known: func(string) []string { return []string{caLine("*", ca)} },
			want:  ErrHostCertInvalid, why: "not yet valid"},
		{desc: "user certificate", signer: hostCert(t, ca, hostKey, func(c *ssh.Certificate) { c.CertType = ssh.UserCert }),
			known: func(string) []string { return []string{caLine("*", ca)} },
			want:  ErrHostCertInvalid, why: "a user certificate, not a host certificate"},
		{desc: "critical option", signer: hostCert(t, ca, hostKey, func(c *ssh.Certificate) { c.CriticalOptions = map[string]string{"force-command": "true"} }),
			known: func(string) []string { return []string{caLine("*", ca)} },
			want:  ErrHostCertInvalid, why: "unsupported critical option"},
		{desc: "revoked CA", signer: hostCert(t, ca, hostKey, nil),
			known: func(string) []string {
				return []string{caLine("*", ca), "@revoked * " + authorizedLine(ca.PublicKey())}
			},
			want: ErrHostCertInvalid, why: "revoked CA: its CA " + ssh.FingerprintSHA256(ca.PublicKey()) + " is revoked at"},
		{desc: "revoked host key", signer: hostCert(t, ca, hostKey, nil),
			known: func(string) []string {
				return []string{caLine("*", ca), "@revoked * " + authorizedLine(hostKey.PublicKey())}
			},
			want: ErrHostKeyRevoked, why: "by the @revoked line"},
		{desc: "revocation for another host", signer: hostCert(t, ca, hostKey, nil),
			known: func(string) []string {
				return []string{caLine("*", ca), "@revoked db.example.com " + authorizedLine(ca.PublicKey())}
			}},
		{desc: "invalid certificate, known plain key", signer: hostCert(t, ca, hostKey, past),
			known: func(addr string) []string {
				return []string{caLine("*", ca), knownhosts.Line([]string{knownhosts.Normalize(addr)}, hostKey.PublicKey())}
			}},
		{desc: "invalid certificate, other plain key", signer: hostCert(t, ca, hostKey, past),
			known: func(addr string) []string {
				return []string{caLine("*", ca), knownhosts.Line([]string{knownhosts.Normalize(addr)}, otherCA.PublicKey())}
			},
			want: ErrHostCertInvalid, why: "expired at"},
		{desc: "plain key, CA only", signer: hostKey,
			known: func(string) []string { return []string{caLine("*", ca)} },
			want:  ErrUnknownHost},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			h := startHost(t, client.PublicKey(), tc.signer)
			d, err := NewDialer([]ssh.AuthMethod{ssh.PublicKeys(client)}, writeFile(t, tc.known(h.addr)...), time.Second, nil)
			if err != nil {
				t.Fatal(err)
			}
			c, err := d.Dial(t.Context(), h.inventory())
			if c != nil {
				c.Close()
			}
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				return
			}
			var hk *HostKeyError
			if !errors.Is(err, tc.want) || !errors.As(err, &hk) {
				t.Fatalf("Dial = %v, want %v", err, tc.want)
			}
			if !strings.Contains(hk.Why, tc.why) {
				t.Errorf("why %q, want %q", hk.Why, tc.why)
			}
			if !strings.Contains(err.Error(), ssh.FingerprintSHA256(hostKey.PublicKey())) && tc.want != ErrHostCertInvalid {
				t.Errorf("error %q lacks the host key's fingerprint", err)
			}
			if auths, _ := h.counts(); auths != 0 {
				t.Errorf("%d authentication attempts reached the host", auths)
			}
		})
	}
}

// Certificate algorithms are asked for first where a CA line applies, and
// only there.
func TestHostCertAlgorithms(t *testing.T) {
	ca, key := newSigner(t, "ed25519"), newSigner(t, "ecdsa")
	known := writeFile(t,
		"@cert-authority *.example.com "+authorizedLine(ca.PublicKey()),
		knownhosts.Line([]string{"b.example.com"}, key.PublicKey()),
		knownhosts.Line([]string{"plain.example.org"}, key.PublicKey()),
	)
	d, err := NewDialer(nil, known, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	testCases := []struct {
		desc, addr string
		want       []string
	}{
		{desc: "CA only", addr: "a.example.com:22", want: append(slices.Clone(certAlgorithms), plainAlgorithms...)},
		{desc: "CA and a key", addr: "b.example.com:22", want: append(slices.Clone(certAlgorithms), ssh.KeyAlgoECDSA256)},
		{desc: "key only", addr: "plain.example.org:22", want: []string{ssh.KeyAlgoECDSA256}},
		{desc: "nothing", addr: "c.example.org:22", want: nil},
		{desc: "CA pattern without a port", addr: "a.example.com:2222", want: append(slices.Clone(certAlgorithms), plainAlgorithms...)},
		{desc: "key for another port", addr: "plain.example.org:2222", want: []string{ssh.KeyAlgoECDSA256}},
		{desc: "nothing for the address", addr: "[::1]:2222", want: nil},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			if got := d.keys.algorithms(tc.addr); !slices.Equal(got, tc.want) {
				t.Errorf("algorithms(%s) = %v, want %v", tc.addr, got, tc.want)
			}
		})
	}
	if certAlgorithms[0] != ssh.CertAlgoED25519v01 {
		t.Errorf("first certificate algorithm %s", certAlgorithms[0])
	}
}

// A malformed line is skipped with one warning naming FILE:LINE; it never
// makes a host trusted, and one that may revoke a key refuses the hosts it
// names.
func TestMalformedKnownHosts(t *testing.T) {
	client := newSigner(t, "ed25519")
	h := startHost(t, client.PublicKey())
	other := newSigner(t, "ed25519")
	good := knownhosts.Line([]string{knownhosts.Normalize(h.addr)}, h.keys[0].PublicKey())
	broken := []string{
		"db.example.com ssh-ed25519 AAAA%%%notbase64",
		"@cert-authorty *.example.com " + authorizedLine(other.PublicKey()),
		"web.example.com ssh-ed25519",
	}
	testCases := []struct {
		desc     string
		lines    []string
		want     error // nil: accepted
		warnings []int // lines warned about
	}{
		{desc: "malformed lines for other hosts", lines: append([]string{broken[0], good}, broken[1:]...), warnings: []int{1, 3, 4}},
		{desc: "unknown host stays unknown", lines: broken, want: ErrUnknownHost, warnings: []int{1, 2, 3}},
		{desc: "broken line for the host", lines: []string{knownhosts.Normalize(h.addr) + " ssh-ed25519 AAAA%%%", good}, warnings: []int{1}},
		{desc: "broken revocation for the host", lines: []string{good, "@revoked * ssh-ed25519 AAAA%%%"},
			want: ErrHostKeyRevoked, warnings: []int{2}},
		{desc: "broken revocation for another host", lines: []string{good, "@revoked db.example.com ssh-ed25519 AAAA%%%"}, warnings: []int{2}},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			known := writeFile(t, tc.lines...)
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			d, err := NewDialer([]ssh.AuthMethod{ssh.PublicKeys(client)}, known, time.Second, log)
			if err != nil {
				t.Fatalf("NewDialer: %v", err)
			}
			for range 2 {
				c, err := d.Dial(t.Context(), h.inventory())
				if c != nil {
					c.Close()
				}
				if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
					t.Fatalf("Dial = %v, want %v", err, tc.want)
				}
			}
			out := logs.String()
			if n := strings.Count(out, "level=WARN"); n != len(tc.warnings) {
				t.Errorf("%d warnings, want %d:\n%s", n, len(tc.warnings), out)
			}
			for _, n := range tc.warnings {
				if want := "line=" + known + ":" + strconv.Itoa(n) + " "; strings.Count(out, want) != 1 {
					t.Errorf("no single warning for %s:%d:\n%s", known, n, out)
				}
			}
		})
	}
}
