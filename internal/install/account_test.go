package install

import (
	"regexp"
	"strings"
	"testing"
)

// TestValidAccount checks the written-out account check against the
// regexp it replaced, on chosen names and on every string of up to three
// characters over an alphabet that covers each class of character.
func TestValidAccount(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\$?$`)
	cases := []string{
		"", "$", "$$", "nginx", "www-data", "_apt", "ssl-cert", "33", "0", "a$", "a$$", "host$",
		".hidden", "-dash", "a.b-c_d", "a b", "a/b", "a:b", "é", "a\n", "a$\n",
		"a" + strings.Repeat("b", 63), "a" + strings.Repeat("b", 63) + "$", "a" + strings.Repeat("b", 64),
		"a" + strings.Repeat("b", 64) + "$",
	}
	for _, s := range cases {
		if got, want := validAccount(s), re.MatchString(s); got != want {
			t.Errorf("validAccount(%q) = %v, want %v", s, got, want)
		}
	}
	alphabet := []string{"a", "Z", "5", "_", ".", "-", "$", " ", "\n", "é"}
	var walk func(prefix string, depth int)
	n := 0
	walk = func(prefix string, depth int) {
		n++
		if got, want := validAccount(prefix), re.MatchString(prefix); got != want {
			t.Errorf("validAccount(%q) = %v, want %v", prefix, got, want)
		}
		if depth == 0 {
			return
		}
		for _, c := range alphabet {
			walk(prefix+c, depth-1)
		}
	}
	walk("", 3)
	if n != 1+10+100+1000 {
		t.Fatalf("walked %d strings", n)
	}
	if !validAccount("www-data") || validAccount("-x") {
		t.Fatal("basic cases wrong")
	}
}
