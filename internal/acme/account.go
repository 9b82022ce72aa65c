package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	legoacme "github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/registration"

	"github.com/certpush/certpush/internal/atomicfile"
	"github.com/certpush/certpush/internal/bundle"
)

const (
	accountKeyFile  = "account.key"
	accountJSONFile = "account.json"
)

// account is the ACME account: its key and its registration at the CA.
type account struct {
	dir   string
	email string
	key   crypto.Signer
	reg   *accountRegistration
}

func (a *account) GetEmail() string { return a.email }

// GetRegistration gives lego the account's URL (its key id), or nil before
// registration.
func (a *account) GetRegistration() *legoacme.ExtendedAccount {
	if a.reg == nil {
		return nil
	}
	return &legoacme.ExtendedAccount{Account: a.reg.Body, Location: a.reg.URI}
}

// accountFile is account.json.
type accountFile struct {
	Directory    string               `json:"directory"`
	Email        string               `json:"email,omitempty"`
	Registration *accountRegistration `json:"registration"`
}

// accountRegistration is the account as the CA answered its registration,
// stored as {"body": ..., "uri": ...} (the layout of account.json files
// written by earlier versions, kept so that they still load).
type accountRegistration struct {
	Body legoacme.Account `json:"body"`
	URI  string           `json:"uri,omitempty"`
}

// accountDir is <stateDir>/acme/<directory host and path>/<email>.
func accountDir(stateDir, directory, email string) (string, error) {
	u, err := url.Parse(directory)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("%w: directory URL %q", ErrConfig, directory)
	}
	if email == "" {
		email = "default"
	}
	return filepath.Join(stateDir, "acme", pathSafe(u.Host+u.Path), pathSafe(email)), nil
}

// pathSafe maps s to one path element: letters, digits, '.', '-', '@',
// '+' and '_' stay, everything else becomes '_'.
func pathSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9',
			r == '.', r == '-', r == '@', r == '+', r == '_':
			return r
		}
		return '_'
	}, strings.TrimRight(s, "/"))
	if strings.Trim(s, ".") == "" {
		s = "_" + s
	}
	return s
}

// loadOrRegister reads the stored account or registers a new one. The key
// is created first (0600, exclusively) and the registration is written
// after the CA accepted it; a key left without a registration is
// registered again, which the CA answers with the same account.
func (c *Client) loadOrRegister(ctx context.Context) (*account, error) {
	dir, err := accountDir(c.cfg.StateDir, c.cfg.Directory, c.cfg.Email)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("account dir: %w", err)
	}
	key, err := loadOrCreateKey(filepath.Join(dir, accountKeyFile))
	if err != nil {
		return nil, err
	}
	a := &account{dir: dir, email: c.cfg.Email, key: key}

	data, err := os.ReadFile(filepath.Join(dir, accountJSONFile))
	switch {
	case err == nil:
		var f accountFile
		if err := json.Unmarshal(data, &f); err != nil {
			return nil, fmt.Errorf("read %s: %w", accountJSONFile, err)
		}
		if f.Registration == nil || f.Registration.URI == "" {
			return nil, fmt.Errorf("read %s: no registration URI", accountJSONFile)
		}
		a.reg = f.Registration
		c.log.Debug("acme account loaded", "uri", a.reg.URI, "dir", dir)
		return a, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read account: %w", err)
	}

	cl, err := c.legoClient(ctx, a)
	if err != nil {
		return nil, err
	}
	meta := cl.GetServerMetadata()
	if tos := meta.TermsOfService; tos != "" {
		c.log.Info("acme: agreeing to the CA's terms of service", "url", tos)
	}
	var ext *legoacme.ExtendedAccount
	if c.cfg.EAB != nil {
		ext, err = cl.Registration.RegisterWithExternalAccountBinding(ctx, registration.RegisterEABOptions{
			TermsOfServiceAgreed: true,
			Kid:                  c.cfg.EAB.KID,
			HmacEncoded:          c.cfg.EAB.HMACKey,
		})
	} else {
		if meta.ExternalAccountRequired {
			return nil, fmt.Errorf("%w: the CA requires an external account binding (eab)", ErrConfig)
		}
		ext, err = cl.Registration.Register(ctx, registration.RegisterOptions{TermsOfServiceAgreed: true})
	}
	if err != nil {
		return nil, fmt.Errorf("register acme account: %w", err)
	}
	if ext == nil || ext.Location == "" {
		return nil, errors.New("register acme account: no account URL in the answer")
	}
	reg := &accountRegistration{Body: ext.Account, URI: ext.Location}
	out, err := json.MarshalIndent(accountFile{Directory: c.cfg.Directory, Email: c.cfg.Email, Registration: reg}, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, accountJSONFile), append(out, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("write account: %w", err)
	}
	a.reg = reg
	c.log.Info("acme account registered", "uri", reg.URI, "email", c.cfg.Email, "dir", dir)
	return a, nil
}

// loadOrCreateKey reads the account key, or makes a P-256 key and writes
// it with mode 0600 from creation. When two processes race, one creates it
// and both use it.
func loadOrCreateKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		data = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err := atomicfile.CreateNew(path, data, 0o600); err == nil {
			return k, nil
		} else if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("write account key: %w", err)
		}
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read account key: %w", err)
	}
	k, err := bundle.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("read account key %s: %w", path, err)
	}
	return k, nil
}
