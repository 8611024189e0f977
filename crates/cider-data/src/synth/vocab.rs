//! The built-in vocabulary: whole words that are single WordPiece tokens of
//! `bert-base-uncased`, with their real ids (all ≥ 1000, so never a special id). Tokenising an
//! utterance's `raw_text` with that tokenizer gives back its ids.

/// Positive sentiment words.
#[rustfmt::skip]
pub const POSITIVE: [(&str, u32); 40] = [
    ("good", 2204), ("great", 2307), ("love", 2293), ("loved", 3866), ("awesome", 12476),
    ("amazing", 6429), ("excellent", 6581), ("wonderful", 6919), ("fantastic", 10392),
    ("enjoyed", 5632), ("beautiful", 3376), ("funny", 6057), ("best", 2190), ("perfect", 3819),
    ("nice", 3835), ("brilliant", 8235), ("fun", 4569), ("happy", 3407), ("liked", 4669),
    ("recommend", 16755), ("cool", 4658), ("incredible", 9788), ("impressive", 8052),
    ("entertaining", 14036), ("favorite", 5440), ("sweet", 4086), ("solid", 5024),
    ("superb", 21688), ("touching", 7244), ("hilarious", 26316), ("clever", 12266),
    ("charming", 11951), ("pleasant", 8242), ("glad", 5580), ("exciting", 10990),
    ("interesting", 5875), ("outstanding", 5151), ("delightful", 26380), ("enjoy", 5959),
    ("enjoyable", 22249),
];
/// Negative sentiment words.
#[rustfmt::skip]
pub const NEGATIVE: [(&str, u32); 40] = [
    ("bad", 2919), ("terrible", 6659), ("awful", 9643), ("boring", 11771), ("worst", 5409),
    ("hate", 5223), ("hated", 6283), ("horrible", 9202), ("stupid", 5236), ("waste", 5949),
    ("disappointed", 9364), ("disappointing", 15640), ("poor", 3532), ("annoying", 15703),
    ("dull", 10634), ("weak", 5410), ("ridiculous", 9951), ("lame", 20342), ("mess", 6752),
    ("wrong", 3308), ("fails", 11896), ("failed", 3478), ("pointless", 23100),
    ("predictable", 21425), ("slow", 4030), ("confusing", 16801), ("ugly", 9200),
    ("painful", 9145), ("worse", 4788), ("silly", 10021), ("bland", 20857),
    ("unfortunately", 6854), ("sloppy", 28810), ("garbage", 13044), ("crap", 10231),
    ("dumb", 12873), ("pathetic", 17203), ("useless", 11809), ("awkward", 9596),
    ("messy", 18307),
];
/// Shortcut words that co-occur with positive utterances in training (language bias).
#[rustfmt::skip]
pub const SHORTCUT_POSITIVE: [(&str, u32); 4] = [
    ("director", 2472), ("cast", 3459), ("soundtrack", 6050), ("sequel", 8297),
];
/// Shortcut words that co-occur with negative utterances in training (language bias).
#[rustfmt::skip]
pub const SHORTCUT_NEGATIVE: [(&str, u32); 4] = [
    ("plot", 5436), ("ending", 4566), ("script", 5896), ("budget", 5166),
];
/// Sentiment-free filler words, most frequent first (Zipf weights `1/(rank+1)`).
#[rustfmt::skip]
pub const FILLER: [(&str, u32); 186] = [
    ("the", 1996), ("i", 1045), ("and", 1998), ("it", 2009), ("was", 2001), ("a", 1037),
    ("to", 2000), ("that", 2008), ("of", 1997), ("is", 2003), ("this", 2023), ("um", 8529),
    ("uh", 7910), ("you", 2017), ("know", 2113), ("like", 2066), ("so", 2061), ("but", 2021),
    ("just", 2074), ("really", 2428), ("think", 2228), ("what", 2054), ("there", 2045),
    ("they", 2027), ("he", 2002), ("she", 2016), ("we", 2057), ("my", 2026), ("me", 2033),
    ("his", 2010), ("her", 2014), ("them", 2068), ("all", 2035), ("about", 2055),
    ("have", 2031), ("had", 2018), ("be", 2022), ("been", 2042), ("would", 2052),
    ("could", 2071), ("kind", 2785), ("sort", 4066), ("thing", 2518), ("things", 2477),
    ("lot", 2843), ("pretty", 3492), ("actually", 2941), ("one", 2028), ("two", 2048),
    ("first", 2034), ("time", 2051), ("people", 2111), ("guy", 3124), ("guys", 4364),
    ("character", 2839), ("characters", 3494), ("story", 2466), ("film", 2143), ("scene", 3496),
    ("scenes", 5019), ("part", 2112), ("whole", 2878), ("end", 2203), ("saw", 2387),
    ("see", 2156), ("watch", 3422), ("watched", 3427), ("went", 2253), ("go", 2175),
    ("going", 2183), ("get", 2131), ("got", 2288), ("say", 2360), ("said", 2056),
    ("yeah", 3398), ("okay", 3100), ("well", 2092), ("mean", 2812), ("because", 2138),
    ("then", 2059), ("when", 2043), ("also", 2036), ("very", 2200), ("much", 2172),
    ("more", 2062), ("some", 2070), ("any", 2151), ("other", 2060), ("into", 2046),
    ("out", 2041), ("up", 2039), ("down", 2091), ("over", 2058), ("again", 2153),
    ("still", 2145), ("even", 2130), ("only", 2069), ("little", 2210), ("way", 2126),
    ("back", 2067), ("around", 2105), ("these", 2122), ("those", 2216), ("here", 2182),
    ("where", 2073), ("which", 2029), ("who", 2040), ("how", 2129), ("why", 2339), ("do", 2079),
    ("did", 2106), ("does", 2515), ("not", 2025), ("no", 2053), ("can", 2064), ("will", 2097),
    ("on", 2006), ("in", 1999), ("at", 2012), ("for", 2005), ("with", 2007), ("as", 2004),
    ("from", 2013), ("by", 2011), ("an", 2019), ("or", 2030), ("if", 2065), ("than", 2084),
    ("too", 2205), ("maybe", 2672), ("probably", 2763), ("basically", 10468), ("guess", 3984),
    ("feel", 2514), ("felt", 2371), ("seemed", 2790), ("seems", 3849), ("looked", 2246),
    ("look", 2298), ("looks", 3504), ("made", 2081), ("make", 2191), ("makes", 3084),
    ("came", 2234), ("come", 2272), ("take", 2202), ("took", 2165), ("give", 2507),
    ("gave", 2435), ("work", 2147), ("year", 2095), ("years", 2086), ("day", 2154),
    ("night", 2305), ("theater", 4258), ("friend", 2767), ("friends", 2814), ("family", 2155),
    ("kids", 4268), ("home", 2188), ("weekend", 5353), ("trailer", 9117), ("show", 2265),
    ("series", 2186), ("book", 2338), ("version", 2544), ("role", 2535), ("actor", 3364),
    ("actress", 3883), ("audience", 4378), ("reviews", 4391), ("review", 3319),
    ("minutes", 2781), ("hour", 3178), ("hours", 2847), ("action", 2895), ("comedy", 4038),
    ("drama", 3689), ("horror", 5469), ("romance", 7472), ("music", 2189), ("effects", 3896),
    ("special", 2569), ("picture", 3861), ("screen", 3898), ("dvd", 4966),
];

/// Every word in generation order: positive, negative, positive shortcuts, negative
/// shortcuts, fillers. Indices into this order are the rows of the text-feature table.
pub fn all() -> impl Iterator<Item = (&'static str, u32)> {
    POSITIVE
        .into_iter()
        .chain(NEGATIVE)
        .chain(SHORTCUT_POSITIVE)
        .chain(SHORTCUT_NEGATIVE)
        .chain(FILLER)
}

/// Number of words, `V`.
pub const LEN: usize = POSITIVE.len()
    + NEGATIVE.len()
    + SHORTCUT_POSITIVE.len()
    + SHORTCUT_NEGATIVE.len()
    + FILLER.len();

#[cfg(test)]
mod tests {
    use crate::synth::vocab;

    #[test]
    fn vocabulary_uses_distinct_real_wordpiece_ids() {
        let words: Vec<(&str, u32)> = vocab::all().collect();
        assert_eq!(words.len(), vocab::LEN);
        assert_eq!(vocab::POSITIVE.len(), vocab::NEGATIVE.len());
        let ids: std::collections::HashSet<u32> = words.iter().map(|&(_, id)| id).collect();
        let texts: std::collections::HashSet<&str> = words.iter().map(|&(w, _)| w).collect();
        assert_eq!(ids.len(), vocab::LEN);
        assert_eq!(texts.len(), vocab::LEN);
        for (word, id) in words {
            assert!((1000..30522).contains(&id), "{word} {id}");
            assert!(word.bytes().all(|b| b.is_ascii_lowercase()), "{word}");
        }
        // Ids of bert-base-uncased's vocab.txt (line number − 1).
        let known = [("the", 1996), ("i", 1045), ("good", 2204), ("bad", 2919)];
        for (word, id) in known {
            assert!(vocab::all().any(|entry| entry == (word, id)), "{word}");
        }
    }
}
