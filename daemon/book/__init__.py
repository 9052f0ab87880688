"""A text read aloud as a book: any input file becomes a Document of chapters, spoken as
sentence chunks, and the rendered chunks are assembled into one file with chapter marks and
subtitles."""
