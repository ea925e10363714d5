// Package version holds the build's version string, stamped by the Makefile through -ldflags.
package version

// Version is replaced at link time; "dev" marks a build made without the Makefile.
var Version = "dev"
