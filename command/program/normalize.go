package program

// Exported forms of the aggregate's input rules, for callers that must check input
// before any aggregate exists (ingest validates every feed item while the upload
// streams in, long before a worker loads the program). They run the very checks
// Create, AddEpisode, Update and UpdateEpisode run, so a value they accept is one
// the aggregate accepts (state rules such as unique episode numbers aside), and they
// return the values as the aggregate would store them (trimmed title, canonical
// language, de-duplicated tags, default season), so callers can compare them with a
// loaded program's state.

// NormalizeNewProgram checks a new program as Create does and returns it as Create
// would record it (Tags never nil). Every invalid field is listed in the returned
// *ValidationError.
func NormalizeNewProgram(in NewProgram) (NewProgram, error) {
	var fe fieldErrors
	out := in
	out.Title = normTitle(&fe, in.Title)
	checkDescription(&fe, in.Description)
	checkCategory(&fe, in.Category)
	out.Language = normLanguage(&fe, in.Language)
	out.Tags = normTags(&fe, in.Tags)
	checkExternalID(&fe, in.ExternalID)
	if err := fe.err(); err != nil {
		return NewProgram{}, err
	}
	return out, nil
}

// NormalizeNewEpisode checks a new episode as AddEpisode does (input only) and
// returns it as AddEpisode would record it: Season 0 becomes the default season 1.
func NormalizeNewEpisode(in NewEpisode) (NewEpisode, error) {
	var fe fieldErrors
	out := in
	out.Title = normTitle(&fe, in.Title)
	checkNumber(&fe, in.Number)
	out.Season = normSeason(&fe, in.Season, true)
	checkDescription(&fe, in.Description)
	checkDuration(&fe, in.DurationSeconds)
	checkExternalID(&fe, in.ExternalID)
	if err := fe.err(); err != nil {
		return NewEpisode{}, err
	}
	return out, nil
}

// NormalizeEpisodeChanges checks an episode update as UpdateEpisode does (input
// only; a set Season must be at least 1, there is no default) and returns the
// changes as UpdateEpisode would compare them. Nil fields stay nil.
func NormalizeEpisodeChanges(ch EpisodeChanges) (EpisodeChanges, error) {
	var fe fieldErrors
	var out EpisodeChanges
	if ch.Title != nil {
		t := normTitle(&fe, *ch.Title)
		out.Title = &t
	}
	if ch.Number != nil {
		n := *ch.Number
		checkNumber(&fe, n)
		out.Number = &n
	}
	if ch.Season != nil {
		s := normSeason(&fe, *ch.Season, false)
		out.Season = &s
	}
	if ch.Description != nil {
		d := *ch.Description
		checkDescription(&fe, d)
		out.Description = &d
	}
	if ch.DurationSeconds != nil {
		d := *ch.DurationSeconds
		checkDuration(&fe, d)
		out.DurationSeconds = &d
	}
	if err := fe.err(); err != nil {
		return EpisodeChanges{}, err
	}
	return out, nil
}
