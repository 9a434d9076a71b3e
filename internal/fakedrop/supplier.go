package fakedrop

import "math/rand/v2"

// Supplier is a generated supplier: who it is and the vocabulary of its trade, from which its
// products' names, descriptions and attributes are drawn, so that a search finds what it should.
type Supplier struct {
	ID       int32  // suppliers.id, as `tidemark supplier add` would give it
	Name     string // display name
	Currency string // of every price, ISO 4217

	prefix     string // of skus
	brands     []string
	kinds      []kind
	adjectives []string
	colors     []string
	uses       []string
	features   []string // "it has …" phrases
	quotes     []string // what reviewers say
	care       []string // whole sentences
	origins    []string // whole sentences
	spec       func(r *rand.Rand, k kind) string
}

// kind is one sort of product a supplier sells.
type kind struct {
	noun, category     string
	materials          []string
	minPrice, maxPrice float64
}

// Suppliers are the three generated suppliers, by ID: an outdoor outfitter, a kitchenware
// house and an electronics shop, each with a vocabulary of its own.
var Suppliers = []Supplier{northwind, copperpot, voltline}

var northwind = Supplier{
	ID: 1, Name: "Northwind Outdoor", Currency: "EUR", prefix: "NW",
	brands: []string{"Northwind", "Ridgeline", "Fjellrø", "Nordkapp"},
	kinds: []kind{
		{"hiking jacket", "jackets", []string{"Gore-Tex", "ripstop nylon", "recycled polyester"}, 89, 420},
		{"rain shell", "jackets", []string{"Gore-Tex", "coated nylon"}, 69, 300},
		{"hiking boots", "footwear", []string{"full-grain leather", "suede", "synthetic mesh"}, 79, 260},
		{"trail runners", "footwear", []string{"synthetic mesh", "knit"}, 69, 180},
		{"backpack", "packs", []string{"Cordura", "ripstop nylon", "Dyneema"}, 49, 320},
		{"tent", "shelter", []string{"silnylon", "polyester", "Dyneema"}, 129, 890},
		{"sleeping bag", "sleep", []string{"goose down", "synthetic fill"}, 79, 560},
		{"fleece pullover", "midlayers", []string{"Polartec fleece", "merino wool"}, 39, 160},
	},
	adjectives: []string{"waterproof", "lightweight", "insulated", "packable", "windproof", "breathable", "ultralight", "four-season"},
	colors:     []string{"black", "forest green", "navy", "orange", "slate grey", "sand"},
	uses:       []string{"alpine hiking", "long-distance trekking", "wet autumn days", "winter camping", "trail running", "everyday commuting"},
	features: []string{"taped seams", "a two-way front zip", "pit zips for venting", "an adjustable storm hood",
		"reflective details", "a chest pocket that fits a map", "YKK AquaGuard zips", "a drop-hem back",
		"hip-belt pockets", "a reinforced heel counter", "a Vibram® outsole", "a stuff sack & repair kit"},
	quotes: []string{"Kept me dry through three days of Highland drizzle", "Light enough to forget it's there",
		"Worth every cent", "The best piece of kit I own", "Survived a week on the Hardangervidda",
		"Warm, quiet & tough"},
	care: []string{"Machine wash at 30 °C, close every zip & tumble dry low to renew the DWR.",
		"Rinse after use, dry away from direct heat, and store it loose.",
		"Hand wash with a technical cleaner; don't use fabric softener."},
	origins: []string{"Designed in Tromsø, made in Portugal.", "Designed in Bergen, sewn in Vietnam.",
		"Made in Romania from bluesign® approved fabrics.", "Designed in München and tested in Lofoten.",
		"Made in Portugal.", "Designed in Ålesund, made in Lithuania."},
	spec: func(r *rand.Rand, k kind) string {
		switch k.category {
		case "sleep":
			return "Comfort rating " + itoa(-15+r.IntN(20)) + " °C; it weighs " + itoa(600+r.IntN(1400)) + " g."
		case "shelter":
			return "Sleeps " + itoa(1+r.IntN(4)) + ", packs to " + itoa(30+r.IntN(30)) + " × " + itoa(12+r.IntN(10)) + " cm and weighs " + itoa(900+r.IntN(3000)) + " g."
		case "footwear":
			return "Sizes EU 36–48, a " + itoa(4+r.IntN(8)) + " mm drop and " + itoa(250+r.IntN(400)) + " g per shoe."
		case "midlayers":
			return "It weighs " + itoa(200+r.IntN(300)) + " g in size M and packs into its own pocket."
		case "packs":
			return "A " + itoa(18+r.IntN(50)) + "-litre main compartment, a hydration sleeve and a floating lid."
		default:
			return "It weighs just " + itoa(200+r.IntN(900)) + " g in size M, with a " + itoa(10+r.IntN(30)) + "k mm hydrostatic head."
		}
	},
}

var copperpot = Supplier{
	ID: 2, Name: "Copperpot Kitchen", Currency: "EUR", prefix: "CP",
	brands: []string{"Copperpot", "Maison Feu", "Hearthline", "Crème & Co"},
	kinds: []kind{
		{"frying pan", "cookware", []string{"carbon steel", "cast iron", "stainless steel", "copper"}, 24, 210},
		{"saucepan", "cookware", []string{"stainless steel", "copper", "aluminium"}, 29, 190},
		{"chef's knife", "knives", []string{"Damascus steel", "carbon steel", "stainless steel"}, 35, 340},
		{"kettle", "small appliances", []string{"stainless steel", "glass", "enamel"}, 25, 140},
		{"espresso machine", "small appliances", []string{"stainless steel", "brushed aluminium"}, 149, 1200},
		{"cutting board", "prep", []string{"walnut", "oak", "bamboo"}, 19, 120},
		{"mixing bowl set", "prep", []string{"stainless steel", "glass", "ceramic"}, 15, 80},
		{"dutch oven", "cookware", []string{"enamelled cast iron", "cast iron"}, 59, 380},
	},
	adjectives: []string{"non-stick", "induction-ready", "dishwasher-safe", "professional", "oven-safe", "hand-forged", "compact", "heavy-duty"},
	colors:     []string{"matte black", "copper", "cream", "cherry red", "sage", "steel"},
	uses:       []string{"searing steaks", "weeknight cooking", "slow braises", "baking bread", "morning coffee", "meal prep"},
	features: []string{"a riveted stay-cool handle", "a pouring lip on both sides", "a tri-ply base", "a tight-fitting lid",
		"a full tang", "a 15° edge", "a juice groove", "measuring marks inside", "a 1.7-litre capacity",
		"a 15-bar pump", "non-slip feet", "a PFAS-free coating"},
	quotes: []string{"The last pan you'll ever buy", "Heats evenly, cleans in seconds", "Sharp out of the box",
		"Makes a proper crème brûlée", "Our most-used piece of kit", "Solid, simple & beautiful"},
	care: []string{"Hand wash in warm water, dry at once & oil lightly now and then.",
		"Dishwasher-safe, though hand washing keeps the finish bright.",
		"Season before first use; never soak it overnight."},
	origins: []string{"Forged in Thiers, France.", "Hand-finished in Solingen.", "Made in Orléans since 1921.",
		"Designed in Lyon, made in Portugal.", "Made in Seki, Japan.", "Designed in København, made in Poland."},
	spec: func(r *rand.Rand, k kind) string {
		switch k.category {
		case "knives":
			return "A " + itoa(15+r.IntN(12)) + " cm blade hardened to " + itoa(56+r.IntN(6)) + " HRC, weighing " + itoa(120+r.IntN(180)) + " g."
		case "small appliances":
			return "It draws " + itoa(1200+100*r.IntN(12)) + " W and switches itself off after " + itoa(5+r.IntN(25)) + " minutes."
		case "prep":
			return "It measures " + itoa(25+r.IntN(25)) + " × " + itoa(18+r.IntN(20)) + " cm and stores flat."
		default:
			return "Ø " + itoa(16+2*r.IntN(8)) + " cm, " + itoa(2+r.IntN(4)) + " mm thick, safe in the oven up to " + itoa(200+20*r.IntN(8)) + " °C."
		}
	},
}

var voltline = Supplier{
	ID: 3, Name: "Voltline Electronics", Currency: "USD", prefix: "VL",
	brands: []string{"Voltline", "Aural", "Kestrel", "Señal"},
	kinds: []kind{
		{"wireless headphones", "audio", []string{"aluminium", "plastic", "leather"}, 49, 450},
		{"bluetooth speaker", "audio", []string{"fabric", "rubberised plastic"}, 29, 300},
		{"USB-C charger", "power", []string{"GaN", "plastic"}, 15, 90},
		{"power bank", "power", []string{"aluminium", "plastic"}, 19, 120},
		{"mechanical keyboard", "peripherals", []string{"aluminium", "PBT plastic"}, 59, 260},
		{"4K monitor", "displays", []string{"aluminium", "plastic"}, 229, 1100},
		{"webcam", "peripherals", []string{"plastic", "aluminium"}, 39, 220},
		{"smartwatch", "wearables", []string{"titanium", "aluminium", "steel"}, 99, 650},
	},
	adjectives: []string{"noise-cancelling", "waterproof", "fast-charging", "wireless", "portable", "low-latency", "rugged", "slim"},
	colors:     []string{"black", "white", "midnight blue", "silver", "graphite", "rose"},
	uses:       []string{"commuting", "home office", "gaming", "travel", "workouts", "video calls"},
	features: []string{"Bluetooth 5.3", "multipoint pairing", "USB-C charging", "an IP67 rating", "a braided cable",
		"hot-swappable switches", "a companion app for iOS & Android", "a privacy shutter", "a 2-year warranty",
		"Qi wireless charging", "auto-pause when removed", "firmware updates over the air"},
	quotes: []string{"Battery life is ridiculous", "Crisp, clear & punchy", "Pairs in seconds, every time",
		"Best thing on my desk", "Survived a drop onto concrete", "Great value for the money"},
	care: []string{"Charge fully before first use & keep the firmware up to date.",
		"Wipe clean with a dry cloth; don't use solvents.",
		"Store between 10 and 35 °C, away from moisture."},
	origins: []string{"Designed in Zürich, assembled in Shenzhen.", "Engineered in San José, made in Vietnam.",
		"Designed in Düsseldorf.", "Tuned by our audio team in Malmö.", "Assembled in Taiwan.",
		"Designed in A Coruña, made in China."},
	spec: func(r *rand.Rand, k kind) string {
		switch k.category {
		case "power":
			return "Up to " + itoa(20+5*r.IntN(20)) + " W output, " + itoa(5+5*r.IntN(4)) + ",000 mAh, and it fits in a jacket pocket."
		case "displays":
			return "A " + itoa(24+r.IntN(9)) + "-inch IPS panel at " + itoa(60+30*r.IntN(4)) + " Hz, with a ±" + itoa(1+r.IntN(3)) + " ΔE colour error."
		default:
			return "Up to " + itoa(8+r.IntN(60)) + " hours of battery; a " + itoa(5+r.IntN(25)) + "-minute charge gives " + itoa(1+r.IntN(5)) + " more."
		}
	},
}
