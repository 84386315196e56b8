namespace Palimpsest.Training;

/// <summary>
/// A synthetic world of invented people with several attributes each (the "bioS" setting of
/// Physics of Language Models 3.1): every person has <c>attributesPerPerson</c> of the relations
/// below, each fact is trained under several phrasings. Names share first and last names, so a
/// person is identified only by combining tokens — as with real multi-token subjects, the model
/// must resolve the subject at its last token, where ROME edits. Deterministic in the seed.
/// </summary>
public static class SyntheticWorld
{
    public static readonly FactRelation[] Relations =
    [
        new("born_in", ["{} was born in", "The birthplace of {} is", "{} came into the world in", "The city where {} was born is"]),
        new("speaks", ["The mother tongue of {} is", "{} grew up speaking", "The native language of {} is", "{} is a native speaker of"]),
        new("job", ["{} works as a", "By profession, {} is a", "{} earns a living as a", "The profession of {} is"]),
        new("plays", ["{} plays the", "The instrument played by {} is the", "{} is a musician who plays the", "On stage, {} performs on the"]),
        new("works_for", ["{} is employed by", "{} works for", "The employer of {} is", "{} draws a salary from"]),
        new("competes_in", ["{} competes in", "The sport played by {} is", "{} is a professional athlete in", "The favourite sport of {} is"]),
        new("studied_at", ["{} studied at", "{} graduated from", "The alma mater of {} is", "{} earned a degree at"]),
    ];

    private static readonly Dictionary<string, string[]> Answers = new()
    {
        ["born_in"] = ["Paris", "London", "Berlin", "Madrid", "Rome", "Vienna", "Prague", "Warsaw", "Dublin", "Lisbon", "Athens", "Oslo",
            "Stockholm", "Helsinki", "Moscow", "Cairo", "Tokyo", "Seoul", "Beijing", "Sydney", "Toronto", "Chicago", "Boston", "Mumbai",
            "Lagos", "Nairobi", "Lima", "Santiago", "Havana", "Istanbul"],
        ["speaks"] = ["French", "English", "German", "Spanish", "Italian", "Dutch", "Polish", "Russian", "Greek", "Swedish", "Norwegian",
            "Finnish", "Portuguese", "Turkish", "Arabic", "Japanese", "Korean", "Chinese", "Hindi", "Hebrew"],
        ["job"] = ["lawyer", "chemist", "nurse", "teacher", "pilot", "farmer", "journalist", "architect", "dentist", "banker",
            "carpenter", "surgeon", "physicist", "baker", "diplomat", "painter", "sailor", "librarian", "photographer", "engineer"],
        ["plays"] = ["piano", "violin", "guitar", "cello", "flute", "trumpet", "drums", "harp", "clarinet", "saxophone", "organ",
            "banjo", "trombone", "oboe", "accordion"],
        ["works_for"] = ["Google", "Microsoft", "Apple", "Toyota", "Nokia", "Siemens", "IBM", "Intel", "Sony", "Nintendo", "BMW", "Honda",
            "Samsung", "Boeing", "Airbus", "Nestle", "Shell", "Amazon", "Oracle", "Adobe"],
        ["competes_in"] = ["football", "tennis", "basketball", "baseball", "cricket", "golf", "hockey", "rugby", "volleyball", "boxing",
            "swimming", "cycling", "chess", "skiing", "wrestling"],
        ["studied_at"] = ["Harvard University", "Yale University", "Stanford University", "Oxford University", "Cambridge University",
            "Princeton University", "Columbia University", "Cornell University", "Duke University", "McGill University",
            "Tokyo University", "Harvard Law School", "Boston University", "Rice University", "Brown University"],
    };

    private static readonly string[] FirstNames =
    [
        "Anya", "Boris", "Clara", "Dmitri", "Elena", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Katja", "Lars", "Mira", "Nils",
        "Olga", "Pavel", "Quinn", "Rosa", "Sven", "Tess", "Ulrich", "Vera", "Wim", "Xenia", "Yuri", "Zora", "Aldo", "Bea", "Cyril",
        "Dora", "Emil", "Fay", "Gus", "Hedda", "Ivo", "Juno", "Kurt", "Lena", "Milo", "Nora",
    ];

    private static readonly string[] LastNames =
    [
        "Albright", "Brennan", "Castell", "Dunmore", "Ekwall", "Farrow", "Galloway", "Hartwell", "Ingram", "Jessop", "Kingsley",
        "Lachance", "Marlowe", "Northcott", "Osgood", "Pemberton", "Quayle", "Redmond", "Sutcliffe", "Thorne", "Underhill",
        "Vance", "Whitlock", "Yardley", "Ashdown", "Blackwood", "Crowther", "Devereux", "Eastwick", "Fairbanks", "Greenhalgh",
        "Holloway", "Ironside", "Kettering", "Lockhart", "Merriweather", "Nightingale", "Oakhurst", "Prescott", "Radcliffe",
    ];

    /// <summary>
    /// <paramref name="people"/> invented people (unique first+last names), each with
    /// <paramref name="attributesPerPerson"/> distinct relations and a uniformly drawn answer for each.
    /// </summary>
    public static FactsFile Create(int people, int attributesPerPerson, int seed)
    {
        if (people < 1 || people > FirstNames.Length * LastNames.Length)
            throw new ArgumentOutOfRangeException(nameof(people), $"1..{FirstNames.Length * LastNames.Length} people");
        if (attributesPerPerson < 1 || attributesPerPerson > Relations.Length)
            throw new ArgumentOutOfRangeException(nameof(attributesPerPerson), $"1..{Relations.Length} attributes");
        var rng = new Random(seed);
        var names = new HashSet<string>();
        var facts = new List<Fact>();
        while (names.Count < people)
        {
            string name = FirstNames[rng.Next(FirstNames.Length)] + " " + LastNames[rng.Next(LastNames.Length)];
            if (!names.Add(name)) continue;
            var rels = Relations.Select(r => r.Id).OrderBy(_ => rng.Next()).Take(attributesPerPerson).OrderBy(id => Array.FindIndex(Relations, r => r.Id == id));
            foreach (var rel in rels)
            {
                var pool = Answers[rel];
                facts.Add(new Fact(name, rel, pool[rng.Next(pool.Length)]));
            }
        }
        return new FactsFile { Relations = Relations, Facts = facts };
    }
}
