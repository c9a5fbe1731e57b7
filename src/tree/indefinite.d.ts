// `indefinite` ships no types; the one call this project makes.
declare module 'indefinite' {
  interface IndefiniteOptions {
    /** Return only the article ("a" / "an"), not the article and the word. */
    articleOnly?: boolean;
    /** Capitalise the article. */
    capitalize?: boolean;
    /** Treat the word as case-sensitive (acronyms such as "FBI"). */
    caseInsensitive?: boolean;
    numbers?: 'colloquial';
  }
  function indefinite(word: string, options?: IndefiniteOptions): string;
  export default indefinite;
}
