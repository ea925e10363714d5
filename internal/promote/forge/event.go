package forge

// Event is what a forge's webhook says about a pull request: enough to wake the stage
// whose branch it is. Nothing in it is trusted to act: the pass asks the forge (Get).
type Event struct {
	Forge Kind
	// Repo is the repository's path on the forge (owner/name).
	Repo   string
	Number int
	Head   string // the request's head branch
	Base   string
	// Action is what happened in the forge's words (closed, merged, synchronize, …).
	Action string
}
