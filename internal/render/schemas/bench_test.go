package schemas

import "testing"

// BenchmarkNewResolveDeploymentService is the cost a render pays for the schemas of an RGD of
// a Deployment and a Service: every iteration starts from a new Set with no schema decoded (the
// snapshot's index, decoded once per process, is not part of it).
func BenchmarkNewResolveDeploymentService(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		s, err := New()
		if err != nil {
			b.Fatal(err)
		}
		for _, k := range []struct{ group, version, kind string }{{"apps", "v1", "Deployment"}, {"", "v1", "Service"}} {
			if _, err := s.ResolveSchema(gvk(k.group, k.version, k.kind)); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkNew is the part of the above that every render pays even for an RGD of CRD kinds
// only: in the render server, once per request.
func BenchmarkNew(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResolveSchemaWarm is a second RGD in the same process asking for a kind again.
func BenchmarkResolveSchemaWarm(b *testing.B) {
	s, err := New()
	if err != nil {
		b.Fatal(err)
	}
	d := gvk("apps", "v1", "Deployment")
	if _, err := s.ResolveSchema(d); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.ResolveSchema(d); err != nil {
			b.Fatal(err)
		}
	}
}
