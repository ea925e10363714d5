package signature

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	notationcore "github.com/notaryproject/notation-core-go/signature"
	"github.com/notaryproject/notation-core-go/signature/cose"
	"github.com/notaryproject/notation-go"
	notationregistry "github.com/notaryproject/notation-go/registry"
	"github.com/notaryproject/notation-go/signer"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	clocktesting "k8s.io/utils/clock/testing"
	orasremote "oras.land/oras-go/v2/registry/remote"
	orasauth "oras.land/oras-go/v2/registry/remote/auth"

	"github.com/kropipe/kropipe/internal/promote/registrytest"
)

// notationRegistry is go-containerregistry's in-memory registry on 127.0.0.1 that counts the
// requests it gets and can answer 503 to some of them.
type notationRegistry struct {
	host     string
	requests atomic.Int64

	mu   sync.Mutex
	fail string // a path part answered with 503
}

func startNotationRegistry(tb testing.TB, referrersAPI bool) *notationRegistry {
	tb.Helper()
	r := &notationRegistry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(referrersAPI))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		r.mu.Lock()
		fail := r.fail
		r.mu.Unlock()
		if fail != "" && strings.Contains(req.URL.Path, fail) {
			http.Error(w, `{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}`, http.StatusServiceUnavailable)
			return
		}
		reg.ServeHTTP(w, req)
	}))
	tb.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

func (r *notationRegistry) failPaths(part string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = part
}

// pushNotationImage pushes a small random image under tag and returns its digest reference.
func pushNotationImage(tb testing.TB, host, repo, tag string, opts ...remote.Option) name.Digest {
	tb.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		tb.Fatal(err)
	}
	ref, err := name.NewTag(host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		tb.Fatal(err)
	}
	if err := remote.Write(ref, img, opts...); err != nil {
		tb.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		tb.Fatal(err)
	}
	return ref.Context().Digest(d.String())
}

// notationCA is a certificate authority made for a test, as a release team's is.
type notationCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newNotationCA(tb testing.TB, cn string) *notationCA {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Example"}, Province: []string{"WA"}, Country: []string{"US"}},
		NotBefore:             now.Add(-72 * time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &notationCA{cert: cert, key: key}
}

func (ca *notationCA) pem() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// leaf issues a code-signing certificate valid from notBefore to notAfter (changed by edit, if
// given) and returns the chain a signer sends (leaf first, root last) with its key.
func (ca *notationCA) leaf(tb testing.TB, cn string, notBefore, notAfter time.Time, edit ...func(*x509.Certificate)) ([]*x509.Certificate, crypto.Signer) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Example"}, Province: []string{"WA"}, Country: []string{"US"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}
	for _, e := range edit {
		e(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return []*x509.Certificate{cert, ca.cert}, key
}

// notationSigning reaches a test registry the way the notation CLI does when it signs.
func notationSigning(tb testing.TB, host, repo string, cred orasauth.Credential) notationregistry.Repository {
	tb.Helper()
	r, err := orasremote.NewRepository(host + "/" + repo)
	if err != nil {
		tb.Fatal(err)
	}
	r.PlainHTTP = true
	r.Client = &orasauth.Client{Credential: orasauth.StaticCredential(host, cred)}
	return notationregistry.NewRepository(r)
}

// notationSign signs ref with notation-go's signer and pushes the signature to its registry.
func notationSign(tb testing.TB, ref name.Digest, chain []*x509.Certificate, key crypto.Signer, cred orasauth.Credential) {
	tb.Helper()
	s, err := signer.NewGenericSigner(key, chain)
	if err != nil {
		tb.Fatal(err)
	}
	repo := notationSigning(tb, ref.RegistryStr(), ref.RepositoryStr(), cred)
	if _, err := notation.Sign(context.Background(), s, repo, notation.SignOptions{
		SignerSignOptions: notation.SignerSignOptions{SignatureMediaType: cose.MediaTypeEnvelope, SigningAgent: "kropipe test"},
		ArtifactReference: ref.String(),
	}); err != nil {
		tb.Fatalf("notation sign %s: %v", ref, err)
	}
}

// notationForge pushes onto ref's referrers an envelope signed over payload at signingTime, with
// notation-core-go's envelope: what notation.Sign refuses to make (another image's signature,
// one back-dated while its certificate was valid).
func notationForge(tb testing.TB, ref name.Digest, payload ocispec.Descriptor, signingTime time.Time, chain []*x509.Certificate, key crypto.Signer) {
	tb.Helper()
	ctx := context.Background()
	repo := notationSigning(tb, ref.RegistryStr(), ref.RepositoryStr(), orasauth.EmptyCredential)
	subject, err := repo.Resolve(ctx, ref.DigestStr())
	if err != nil {
		tb.Fatal(err)
	}
	content, err := json.Marshal(map[string]ocispec.Descriptor{"targetArtifact": payload})
	if err != nil {
		tb.Fatal(err)
	}
	local, err := notationcore.NewLocalSigner(chain, key)
	if err != nil {
		tb.Fatal(err)
	}
	env, err := notationcore.NewEnvelope(cose.MediaTypeEnvelope)
	if err != nil {
		tb.Fatal(err)
	}
	blob, err := env.Sign(&notationcore.SignRequest{
		Payload:       notationcore.Payload{ContentType: "application/vnd.cncf.notary.payload.v1+json", Content: content},
		Signer:        local,
		SigningTime:   signingTime,
		SigningScheme: notationcore.SigningSchemeX509,
		SigningAgent:  "kropipe test",
	})
	if err != nil {
		tb.Fatal(err)
	}
	if _, _, err := repo.PushSignature(ctx, cose.MediaTypeEnvelope, blob, subject, nil); err != nil {
		tb.Fatal(err)
	}
}

func notationDescriptor(tb testing.TB, ref name.Digest) ocispec.Descriptor {
	tb.Helper()
	d, err := notationSigning(tb, ref.RegistryStr(), ref.RepositoryStr(), orasauth.EmptyCredential).Resolve(context.Background(), ref.DigestStr())
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func notationInsecure(string) bool { return true }

const notationReleaseSubject = "CN=release,O=Example,ST=WA,C=US"

func TestNotation_VerifiesSignaturesUnderTheTrustPolicy(t *testing.T) {
	ca := newNotationCA(t, "release CA")
	other := newNotationCA(t, "someone else's CA")
	now := time.Now()
	chain, key := ca.leaf(t, "release", now.Add(-time.Hour), now.Add(24*time.Hour))
	otherChain, otherKey := other.leaf(t, "release", now.Add(-time.Hour), now.Add(24*time.Hour))
	expiredChain, expiredKey := ca.leaf(t, "release", now.Add(-48*time.Hour), now.Add(-24*time.Hour))

	policy := func(identities ...string) Policy {
		return Policy{Name: "release", Notation: &NotationPolicy{
			TrustStore: ca.pem(), TrustStoreRef: "secret argocd/notation-ca", TrustedIdentities: identities,
		}}
	}
	for _, tc := range []struct {
		name         string
		referrersAPI bool
		// sign makes the registry's state for the image at ref; it may return another image to verify.
		sign     func(t *testing.T, ref name.Digest) name.Digest
		policy   Policy
		signedBy string // the verified signer; empty: ErrUnverified saying want
		want     string
	}{{
		name:         "signed by a certificate of the trusted CA, found through the referrers API",
		referrersAPI: true,
		sign: func(t *testing.T, ref name.Digest) name.Digest {
			notationSign(t, ref, chain, key, orasauth.EmptyCredential)
			return ref
		},
		policy:   policy("*"),
		signedBy: notationReleaseSubject + " (Notation, trust store secret argocd/notation-ca)",
	}, {
		name: "signed, on a registry without the referrers API: found through the sha256-<hex> tag",
		sign: func(t *testing.T, ref name.Digest) name.Digest {
			notationSign(t, ref, chain, key, orasauth.EmptyCredential)
			return ref
		},
		policy:   policy("*"),
		signedBy: notationReleaseSubject + " (Notation, trust store secret argocd/notation-ca)",
	}, {
		name:         "signed by a trusted identity named as a distinguished name",
		referrersAPI: true,
		sign: func(t *testing.T, ref name.Digest) name.Digest {
			notationSign(t, ref, chain, key, orasauth.EmptyCredential)
			return ref
		},
		policy:   policy("x509.subject:C=US, ST=WA, O=Example, CN=release"),
		signedBy: notationReleaseSubject + " (Notation, trust store secret argocd/notation-ca)",
	}, {
		name:         "unsigned",
		referrersAPI: true,
		sign:         func(t *testing.T, ref name.Digest) name.Digest { return ref },
		policy:       policy("*"),
		want:         "no Notation signature",
	}, {
		name:   "unsigned, on a registry without the referrers API",
		sign:   func(t *testing.T, ref name.Digest) name.Digest { return ref },
		policy: policy("*"),
		want:   "no Notation signature",
	}, {
		name:         "signed by a CA the trust store does not hold",
		referrersAPI: true,
		sign: func(t *testing.T, ref name.Digest) name.Digest {
			notationSign(t, ref, otherChain, otherKey, orasauth.EmptyCredential)
			return ref
		},
		policy: policy("*"),
		want:   "Notation signature by CN=release,O=Example,ST=WA,C=US, which trust store secret argocd/notation-ca does not trust",
	}, {
		name:         "signed by the trusted CA, but not by a trusted identity",
		referrersAPI: true,
		sign: func(t *testing.T, ref name.Digest) name.Digest {
			notationSign(t, ref, chain, key, orasauth.EmptyCredential)
			return ref
		},
		policy: policy("C=US, ST=WA, O=Example, CN=ci"),
		want:   "Notation signature by CN=release,O=Example,ST=WA,C=US, which is not one of the trusted identities x509.subject:C=US, ST=WA, O=Example, CN=ci",
	}, {
		name:         "a tag pushed again names bytes nobody signed",
		referrersAPI: true,
		sign: func(t *testing.T, ref name.Digest) name.Digest {
			notationSign(t, ref, chain, key, orasauth.EmptyCredential)
			return pushNotationImage(t, ref.RegistryStr(), ref.RepositoryStr(), "2.1.0")
		},
		policy: policy("*"),
		want:   "no Notation signature",
	}, {
		name:         "another image's signature attached to this one",
		referrersAPI: true,
		sign: func(t *testing.T, ref name.Digest) name.Digest {
			signed := notationDescriptor(t, ref)
			unsigned := pushNotationImage(t, ref.RegistryStr(), ref.RepositoryStr(), "2.1.0")
			notationForge(t, unsigned, signed, now, chain, key)
			return unsigned
		},
		policy: policy("*"),
		want:   "over another digest (sha256:",
	}, {
		name:         "signed while its certificate was valid, which has expired since, with no timestamp",
		referrersAPI: true,
		sign: func(t *testing.T, ref name.Digest) name.Digest {
			notationForge(t, ref, notationDescriptor(t, ref), now.Add(-36*time.Hour), expiredChain, expiredKey)
			return ref
		},
		policy: policy("*"),
		want:   "Notation signature by CN=release,O=Example,ST=WA,C=US, whose certificate expired on ",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			reg := startNotationRegistry(t, tc.referrersAPI)
			ref := tc.sign(t, pushNotationImage(t, reg.host, "team/frontend", "2.1.0"))

			got, err := NewNotation(WithNotationInsecure(notationInsecure)).Verify(context.Background(), ref, tc.policy)
			if tc.signedBy != "" {
				if err != nil {
					t.Fatalf("Verify(%s) = %v, want signed by %s", ref, err, tc.signedBy)
				}
				if got.SignedBy != tc.signedBy {
					t.Errorf("SignedBy = %q, want %q", got.SignedBy, tc.signedBy)
				}
				return
			}
			if !errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify(%s) = %+v, %v; want ErrUnverified saying %q", ref, got, err, tc.want)
			}
			t.Log(err)
		})
	}
}

func TestNotation_RegistryFailureIsNotUnverified(t *testing.T) {
	ca := newNotationCA(t, "release CA")
	chain, key := ca.leaf(t, "release", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	p := Policy{Name: "release", Notation: &NotationPolicy{TrustStore: ca.pem(), TrustedIdentities: []string{"*"}}}

	for _, tc := range []struct {
		name         string
		referrersAPI bool
		fail         string // the path part answered with 503
	}{
		{name: "the referrers API answers 503", referrersAPI: true, fail: "/referrers/"},
		{name: "the referrers tag answers 503", fail: "/manifests/sha256-"},
		{name: "the signature envelope answers 503", referrersAPI: true, fail: "/blobs/"},
		{name: "the image manifest answers 503", referrersAPI: true, fail: "/manifests/sha256:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := startNotationRegistry(t, tc.referrersAPI)
			ref := pushNotationImage(t, reg.host, "team/frontend", "2.1.0")
			notationSign(t, ref, chain, key, orasauth.EmptyCredential)
			reg.failPaths(tc.fail)

			n := NewNotation(WithNotationInsecure(notationInsecure))
			_, err := n.Verify(context.Background(), ref, p)
			if err == nil || errors.Is(err, ErrUnverified) {
				t.Fatalf("Verify = %v, want a registry error that is not ErrUnverified", err)
			}
			if !strings.Contains(err.Error(), "503") && !strings.Contains(err.Error(), "Service Unavailable") {
				t.Errorf("error %q does not say what the registry answered", err)
			}
			t.Log(err)

			// Not remembered: once the registry answers, the signature verifies.
			reg.failPaths("")
			if _, err := n.Verify(context.Background(), ref, p); err != nil {
				t.Fatalf("Verify after the registry recovered = %v", err)
			}
		})
	}
}

func TestNotation_PolicyThatDoesNotParseIsNamed(t *testing.T) {
	ca := newNotationCA(t, "release CA")
	leafChain, _ := ca.leaf(t, "release", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafChain[0].Raw})

	for _, tc := range []struct {
		name   string
		policy NotationPolicy
		want   string
	}{
		{name: "empty trust store", policy: NotationPolicy{TrustStoreRef: "file ca.pem", TrustedIdentities: []string{"*"}},
			want: `trust store file ca.pem: no PEM certificate`},
		{name: "trust store holds a leaf, not a CA", policy: NotationPolicy{TrustStore: leafPEM, TrustStoreRef: "file ca.pem", TrustedIdentities: []string{"*"}},
			want: "is not a CA certificate or self-signed signing certificate"},
		{name: "no trusted identities", policy: NotationPolicy{TrustStore: ca.pem(), TrustStoreRef: "file ca.pem"},
			want: `trustedIdentities is empty`},
		{name: "identity that is not a distinguished name", policy: NotationPolicy{TrustStore: ca.pem(), TrustedIdentities: []string{"x509.subject:release"}},
			want: `trusted identity "x509.subject:release" with invalid identity value`},
		{name: "wildcard with other identities", policy: NotationPolicy{TrustStore: ca.pem(), TrustedIdentities: []string{"*", "C=US, ST=WA, O=Example, CN=release"}},
			want: "a wildcard identity cannot be used in conjunction with other values"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.policy.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error saying %q", err, tc.want)
			}
			ref, err := name.NewDigest("127.0.0.1:1/team/frontend@sha256:" + strings.Repeat("a", 64))
			if err != nil {
				t.Fatal(err)
			}
			_, err = NewNotation().Verify(context.Background(), ref, Policy{Name: "release", Notation: &tc.policy})
			if err == nil || errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Verify = %v, want the policy error saying %q, not ErrUnverified", err, tc.want)
			}
		})
	}
}

// crl is the CA's certificate revocation list, revoking the given serial numbers.
func (ca *notationCA) crl(tb testing.TB, revoked ...*big.Int) []byte {
	tb.Helper()
	now := time.Now()
	list := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(24 * time.Hour)}
	for _, serial := range revoked {
		list.RevokedCertificateEntries = append(list.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: now.Add(-time.Hour)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, list, ca.cert, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

func TestNotation_ChecksRevocationThroughTheCRL(t *testing.T) {
	ca := newNotationCA(t, "release CA")
	var (
		crlRequests atomic.Int64
		crlStatus   atomic.Int64 // 0: the CRL
		crlDER      atomic.Pointer[[]byte]
	)
	crlServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		crlRequests.Add(1)
		if code := crlStatus.Load(); code != 0 {
			w.WriteHeader(int(code))
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Write(*crlDER.Load())
	}))
	t.Cleanup(crlServer.Close)
	withCRL := func(c *x509.Certificate) { c.CRLDistributionPoints = []string{crlServer.URL + "/ca.crl"} }
	now := time.Now()
	chain, key := ca.leaf(t, "release", now.Add(-time.Hour), now.Add(24*time.Hour), withCRL)
	p := Policy{Name: "release", Notation: &NotationPolicy{TrustStore: ca.pem(), TrustedIdentities: []string{"*"}}}

	for _, tc := range []struct {
		name       string
		revoked    bool
		crlStatus  int
		want       string // "": verified
		unverified bool
	}{
		{name: "the CRL does not list the signing certificate"},
		{name: "the CRL revokes the signing certificate", revoked: true, unverified: true,
			want: "Notation signature by CN=release,O=Example,ST=WA,C=US, whose certificate is revoked"},
		{name: "the CRL server answers 503", crlStatus: http.StatusServiceUnavailable,
			want: "revocation status of certificate CN=release,O=Example,ST=WA,C=US unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der := ca.crl(t, big.NewInt(12345))
			if tc.revoked {
				der = ca.crl(t, chain[0].SerialNumber)
			}
			crlDER.Store(&der)
			crlStatus.Store(int64(tc.crlStatus))
			reg := startNotationRegistry(t, true)
			ref := pushNotationImage(t, reg.host, "team/frontend", "2.1.0")
			notationSign(t, ref, chain, key, orasauth.EmptyCredential)

			_, err := NewNotation(WithNotationInsecure(notationInsecure)).Verify(context.Background(), ref, p)
			switch {
			case tc.want == "":
				if err != nil {
					t.Fatalf("Verify = %v, want verified", err)
				}
			case tc.unverified != errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), tc.want):
				t.Fatalf("Verify = %v; want an error saying %q, ErrUnverified: %v", err, tc.want, tc.unverified)
			default:
				t.Log(err)
			}
		})
	}

	t.Run("the CRL is downloaded once while it is fresh", func(t *testing.T) {
		der := ca.crl(t)
		crlDER.Store(&der)
		crlStatus.Store(0)
		reg := startNotationRegistry(t, true)
		n := NewNotation(WithNotationInsecure(notationInsecure))
		before := crlRequests.Load()
		for _, tag := range []string{"2.1.0", "2.2.0"} {
			ref := pushNotationImage(t, reg.host, "team/frontend", tag)
			notationSign(t, ref, chain, key, orasauth.EmptyCredential)
			if _, err := n.Verify(context.Background(), ref, p); err != nil {
				t.Fatalf("Verify %s = %v", tag, err)
			}
		}
		if got := crlRequests.Load() - before; got != 1 {
			t.Errorf("CRL downloaded %d times for two digests, want once", got)
		}
	})
}

// notationKeychain hands out one registry's basic-auth credentials, as an image pull Secret does.
type notationKeychain struct {
	host, user, password string
}

func (k notationKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if r.RegistryStr() != k.host {
		return authn.Anonymous, nil
	}
	return &authn.Basic{Username: k.user, Password: k.password}, nil
}

func TestNotation_PrivateRegistryWithKeychainCredentials(t *testing.T) {
	ca := newNotationCA(t, "release CA")
	chain, key := ca.leaf(t, "release", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	reg := registrytest.StartPrivate(t, "ci", "s3cret")
	ref := pushNotationImage(t, reg.Host, "team/frontend", "2.1.0", remote.WithAuth(&authn.Basic{Username: "ci", Password: "s3cret"}))
	notationSign(t, ref, chain, key, orasauth.Credential{Username: "ci", Password: "s3cret"})
	p := Policy{Notation: &NotationPolicy{TrustStore: ca.pem(), TrustedIdentities: []string{"*"}}}

	n := NewNotation(
		WithNotationInsecure(notationInsecure),
		WithNotationKeychain(notationKeychain{host: reg.Host, user: "ci", password: "old"}),
	)
	_, err := n.Verify(context.Background(), ref, p)
	if err == nil || errors.Is(err, ErrUnverified) {
		t.Fatalf("Verify with a wrong password = %v, want a registry error (401)", err)
	}
	t.Log(err)
	n.SetKeychain(notationKeychain{host: reg.Host, user: "ci", password: "s3cret"})
	got, err := n.Verify(context.Background(), ref, p)
	if err != nil {
		t.Fatalf("Verify with the keychain's new credentials = %v", err)
	}
	if want := notationReleaseSubject + " (Notation)"; got.SignedBy != want {
		t.Errorf("SignedBy = %q, want %q", got.SignedBy, want)
	}
}

func TestNotation_CachesAnswersByDigestAndPolicy(t *testing.T) {
	ca := newNotationCA(t, "release CA")
	chain, key := ca.leaf(t, "release", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	reg := startNotationRegistry(t, true)
	signed := pushNotationImage(t, reg.host, "team/frontend", "2.1.0")
	notationSign(t, signed, chain, key, orasauth.EmptyCredential)
	later := pushNotationImage(t, reg.host, "team/frontend", "2.2.0")
	p := Policy{Name: "release", Notation: &NotationPolicy{TrustStore: ca.pem(), TrustedIdentities: []string{"*"}}}

	clk := clocktesting.NewFakePassiveClock(time.Now())
	n := NewNotation(WithNotationInsecure(notationInsecure), WithNotationClock(clk),
		WithNotationUnsignedTTL(5*time.Minute), WithNotationVerifiedTTL(time.Hour))
	ctx := context.Background()
	verify := func(ref name.Digest, p Policy) (requests int64, err error) {
		t.Helper()
		before := reg.requests.Load()
		_, err = n.Verify(ctx, ref, p)
		return reg.requests.Load() - before, err
	}

	if req, err := verify(signed, p); err != nil || req == 0 {
		t.Fatalf("first Verify: %d requests, %v; want the registry asked and the signature verified", req, err)
	}
	if req, err := verify(signed, p); err != nil || req != 0 {
		t.Fatalf("second Verify: %d requests, %v; want the cached answer", req, err)
	}
	other := p
	other.Notation = &NotationPolicy{TrustStore: ca.pem(), TrustedIdentities: []string{"C=US, ST=WA, O=Example, CN=ci"}}
	if req, err := verify(signed, other); !errors.Is(err, ErrUnverified) || req == 0 {
		t.Fatalf("Verify under another policy: %d requests, %v; want the registry asked and ErrUnverified", req, err)
	}

	// An unsigned digest is remembered for a while: CI may sign it just after pushing.
	if req, err := verify(later, p); !errors.Is(err, ErrUnverified) || req == 0 {
		t.Fatalf("Verify unsigned: %d requests, %v; want ErrUnverified", req, err)
	}
	notationSign(t, later, chain, key, orasauth.EmptyCredential)
	clk.SetTime(clk.Now().Add(4 * time.Minute))
	if req, err := verify(later, p); !errors.Is(err, ErrUnverified) || req != 0 {
		t.Fatalf("Verify unsigned again within the TTL: %d requests, %v; want the cached ErrUnverified", req, err)
	}
	clk.SetTime(clk.Now().Add(2 * time.Minute))
	if req, err := verify(later, p); err != nil || req == 0 {
		t.Fatalf("Verify after the TTL: %d requests, %v; want the registry asked and the new signature verified", req, err)
	}

	// A verified answer lasts an hour: a certificate revoked meanwhile is found within it.
	clk.SetTime(clk.Now().Add(50 * time.Minute))
	if req, err := verify(signed, p); err != nil || req != 0 {
		t.Fatalf("Verify within the hour: %d requests, %v; want the cached answer", req, err)
	}
	clk.SetTime(clk.Now().Add(10 * time.Minute))
	if req, err := verify(signed, p); err != nil || req == 0 {
		t.Fatalf("Verify after the hour: %d requests, %v; want the registry asked again", req, err)
	}

	// And never past the signing certificate's expiry.
	long := NewNotation(WithNotationInsecure(notationInsecure), WithNotationClock(clk), WithNotationVerifiedTTL(1000*time.Hour))
	if _, err := long.Verify(ctx, signed, p); err != nil {
		t.Fatal(err)
	}
	clk.SetTime(chain[0].NotAfter.Add(time.Second))
	before := reg.requests.Load()
	if _, err := long.Verify(ctx, signed, p); reg.requests.Load() == before {
		t.Fatalf("Verify after the certificate expired = %v with no request; want it checked again", err)
	}
}

func TestNotation_PlainHTTPOnlyForInsecureRegistries(t *testing.T) {
	ca := newNotationCA(t, "release CA")
	chain, key := ca.leaf(t, "release", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	reg := startNotationRegistry(t, true)
	ref := pushNotationImage(t, reg.host, "team/frontend", "2.1.0")
	notationSign(t, ref, chain, key, orasauth.EmptyCredential)
	p := Policy{Notation: &NotationPolicy{TrustStore: ca.pem(), TrustedIdentities: []string{"*"}}}

	_, err := NewNotation().Verify(context.Background(), ref, p)
	if err == nil || errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), "HTTPS") {
		t.Fatalf("Verify on a plain-HTTP registry not configured insecure = %v, want an HTTPS error, not ErrUnverified", err)
	}
	t.Log(err)
	next := pushNotationImage(t, reg.host, "team/frontend", "2.2.0")
	notationSign(t, next, chain, key, orasauth.EmptyCredential)
	n := NewNotation(WithNotationInsecure(func(host string) bool { return host == reg.host }))
	for _, ref := range []name.Digest{ref, next} { // the second straight over HTTP
		if _, err := n.Verify(context.Background(), ref, p); err != nil {
			t.Fatalf("Verify %s on an insecure registry = %v", ref, err)
		}
	}
}

func TestNotation_VerifiesStagesInParallel(t *testing.T) {
	ca := newNotationCA(t, "release CA")
	chain, key := ca.leaf(t, "release", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	reg := startNotationRegistry(t, true)
	var signed, unsigned []name.Digest
	for _, tag := range []string{"1.0.0", "1.1.0", "1.2.0"} {
		ref := pushNotationImage(t, reg.host, "team/frontend", tag)
		notationSign(t, ref, chain, key, orasauth.EmptyCredential)
		signed = append(signed, ref)
		unsigned = append(unsigned, pushNotationImage(t, reg.host, "team/backend", tag))
	}
	p := Policy{Name: "release", Notation: &NotationPolicy{TrustStore: ca.pem(), TrustedIdentities: []string{"*"}}}
	n := NewNotation(WithNotationInsecure(notationInsecure))

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Go(func() {
			if i == 0 {
				n.SetKeychain(authn.NewMultiKeychain()) // a credential rotation mid-pass
			}
			for _, ref := range signed {
				if _, err := n.Verify(context.Background(), ref, p); err != nil {
					errs <- fmt.Errorf("%s: %w", ref, err)
				}
			}
			for _, ref := range unsigned {
				if _, err := n.Verify(context.Background(), ref, p); !errors.Is(err, ErrUnverified) {
					errs <- fmt.Errorf("%s: %v, want ErrUnverified", ref, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// BenchmarkNotation_Verify measures a first verification of a signed digest (the registry asked,
// the signature checked), on a registry with the referrers API and on one without (the
// sha256-<hex> tag), and a second verification answered from the cache.
func BenchmarkNotation_Verify(b *testing.B) {
	ca := newNotationCA(b, "release CA")
	chain, key := ca.leaf(b, "release", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	p := Policy{Name: "release", Notation: &NotationPolicy{TrustStore: ca.pem(), TrustedIdentities: []string{"*"}}}
	ctx := context.Background()
	signed := func(b *testing.B, referrersAPI bool) (*notationRegistry, name.Digest) {
		reg := startNotationRegistry(b, referrersAPI)
		ref := pushNotationImage(b, reg.host, "team/frontend", "2.1.0")
		notationSign(b, ref, chain, key, orasauth.EmptyCredential)
		return reg, ref
	}

	for _, referrersAPI := range []bool{true, false} {
		b.Run(map[bool]string{true: "first, referrers API", false: "first, referrers tag"}[referrersAPI], func(b *testing.B) {
			reg, ref := signed(b, referrersAPI)
			// Nothing kept: each verification is a first one.
			n := NewNotation(WithNotationInsecure(notationInsecure), WithNotationVerifiedTTL(0))
			if _, err := n.Verify(ctx, ref, p); err != nil { // learns the registry speaks plain HTTP
				b.Fatal(err)
			}
			before := reg.requests.Load()
			for b.Loop() {
				if _, err := n.Verify(ctx, ref, p); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(reg.requests.Load()-before)/float64(b.N), "requests/op")
		})
	}
	b.Run("cached", func(b *testing.B) {
		reg, ref := signed(b, true)
		n := NewNotation(WithNotationInsecure(notationInsecure))
		if _, err := n.Verify(ctx, ref, p); err != nil {
			b.Fatal(err)
		}
		before := reg.requests.Load()
		for b.Loop() {
			if _, err := n.Verify(ctx, ref, p); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(reg.requests.Load()-before)/float64(b.N), "requests/op")
	})
}
