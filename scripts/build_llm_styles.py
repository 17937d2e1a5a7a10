#!/usr/bin/env python
"""Build tests/fixtures/llm_styles.jsonl: solutions written by hand in the styles language models use."""
# ruff: noqa: E501  (the solutions are data, kept one statement a line)
import json, sys

# (style, correct solution, [(old, new), ...] turning it into the flawed twin, 1-based line of the first wrong statement)
ITEMS = [
# --- units: words, units and currency glued around operands
("units", """**Step 1:** Find the cost of the boxes.
38 boxes * $12/box = $456
**Step 2:** Add the shipping fee.
$456 + $25 = $481
The total cost is **$481**.""", [("= $456", "= $446"), ("$456 +", "$446 +"), ("$481", "$471")], 2),
("units", """She earns $23/hour × 40 hours = $920 per week.
Over 4 weeks she earns $920 × 4 = $3,680.""", [("$920 per", "$930 per"), ("$920 ×", "$930 ×"), ("$3,680", "$3,720")], 1),
("units", """1. Students: 495 students * $15/student = $7,425
2. Teachers: 30 teachers * $20/teacher = $600
3. Total: $7,425 + $600 = $8,025""", [("$8,025", "$8,125")], 3),
("units", """The car travels 65 miles/hour × 3 hours = 195 miles.
It then travels 45 miles/hour × 2 hours = 90 miles.
Total distance: 195 miles + 90 miles = 285 miles.""", [("= 195 miles.", "= 185 miles."), ("195 miles +", "185 miles +"), ("285", "275")], 1),
("units", """Each bag holds 12 kg, so 7 bags hold 7 bags × 12 kg/bag = 84 kg.
After using 19 kg, 84 kg - 19 kg = 65 kg remain.""", [("65 kg remain", "75 kg remain")], 2),
("units", """- Time to paint one room: 3 \\text{ hours}
- Rooms: 6
- Total time: 3 \\text{ hours} \\times 6 = 18 \\text{ hours}
- At $40 per hour: 18 \\times 40 = 720 dollars""", [("= 18 \\text{", "= 16 \\text{"), ("18 \\times 40 = 720", "16 \\times 40 = 640")], 3),
("units", """A ticket costs $8.50 and they buy 6 tickets: $8.50/ticket × 6 tickets = $51.00.
Popcorn for everyone costs 6 × $4.25 = $25.50.
Altogether they spend $51.00 + $25.50 = $76.50.""", [("$76.50", "$77.50")], 3),
("units", """The garden is 24 ft × 15 ft = 360 sq ft.
Fencing: 2 × (24 ft + 15 ft) = 78 ft.""", [("= 78 ft", "= 68 ft")], 2),
# --- labels: parenthesised notes and labels between the numbers
("labels", """Total marbles:
1250 (red marbles) + 375 (blue marbles) = 1625
Marbles given away: 1625 - 400 = 1225""", [("= 1625", "= 1525"), ("1625 - 400 = 1225", "1525 - 400 = 1125")], 2),
("labels", """Books in stock: 7995 (total) - 2595 (sold) = 5400
Books per shelf: 5400 / 60 = 90""", [("= 5400\n", "= 5300\n"), ("5400 / 60 = 90", "5300 / 60 = 88.33")], 1),
("labels", """Let's add the fruit:
- 48 (apples) + 36 (oranges) + 24 (pears) = 108 pieces of fruit
- Each basket holds 12, so 108 / 12 = 9 baskets.""", [("= 108 pieces", "= 98 pieces"), ("108 / 12 = 9", "98 / 12 = 8.17")], 2),
("labels", """Route 66 is 2448 miles long. Grade 5 students drove 2448 (full route) - 1560 (driven) = 888 miles more.""",
 [("= 888", "= 898")], 1),
("labels", """Week 1: 150 pages
Week 2: 150 (week 1) + 35 (extra) = 185 pages
Total: 150 + 185 = 335 pages""", [("= 185 pages", "= 195 pages"), ("150 + 185 = 335", "150 + 195 = 345")], 2),
("labels", """Money left = 500 (budget) - 125 (rent share) - 80 (food) = 295
She saves half: 295 / 2 = 147.5""", [("= 295\n", "= 305\n"), ("295 / 2 = 147.5", "305 / 2 = 152.5")], 1),
("labels", """Chairs: 12 rows (of chairs) × 14 chairs = 168 chairs.
Empty: 168 - 139 (guests) = 29 chairs.""", [("= 29 chairs", "= 31 chairs")], 2),
("labels", """Apartment 4B pays 1200 (rent) + 85 (water) = 1285 each month.
In a year: 1285 × 12 = 15420.""", [("= 15420", "= 15520")], 2),
# --- latex: LaTeX with \text, \times, \frac and display math
("latex", """\\(45 \\text{ apples} + 30 \\text{ apples} = 75 \\text{ apples}\\)
Each of 5 friends gets \\(\\frac{75}{5} = 15\\) apples.""", [("= 75 \\text", "= 85 \\text"), ("\\frac{75}{5} = 15", "\\frac{85}{5} = 17")], 1),
("latex", """\\[
120 + 45 \\, (\\text{green}) = 165
\\]
\\[
165 - 30 = 135
\\]""", [("= 165", "= 175"), ("165 - 30 = 135", "175 - 30 = 145")], 2),
("latex", """The number of hours is \\( 3 \\text{ hours} \\times 40 = 120 \\text{ hours} \\).
The pay is \\( 120 \\times \\$15 = \\$1800 \\).""", [("= \\$1800", "= \\$1600")], 2),
("latex", """First, \\( \\frac{3}{4} \\times 64 = 48 \\) students like math.
Then \\( 64 - 48 = 16 \\) students do not.""", [("= 48 \\)", "= 46 \\)"), ("64 - 48 = 16", "64 - 46 = 18")], 1),
("latex", """$$\\text{Area} = 12 \\times 9 = 108 \\text{ m}^2$$
$$\\text{Cost} = 108 \\times 7 = 756$$""", [("= 756", "= 746")], 2),
("latex", """\\begin{align*}
\\text{Total} &= 250 + 175 + 90 \\\\
&= 515
\\end{align*}""", [("&= 515", "&= 525")], 3),
("latex", """We compute \\(2^5 \\cdot 3 = 96\\) and \\(96 \\div 4 = 24\\).""", [("96 \\div 4 = 24", "96 \\div 4 = 26")], 1),
("latex", """\\[ \\text{Profit} = \\$1{,}250 - \\$780 = \\$470 \\]""", [("\\$470", "\\$570")], 1),
# --- named: results carried through a named quantity
("named", """T = 84 \\times \\frac{3}{7}
T = 12 \\times 3
T = 36""", [("T = 36", "T = 38")], 3),
("named", """Cost = 15 \\times 4 = 60 dollars
Total = Cost + 25 = 85 dollars""", [("= 85", "= 95")], 2),
("named", """Let P be the number of pencils: P = 6 × 12 = 72.
Each student gets P / 8 = 9 pencils.""", [("P / 8 = 9", "P / 8 = 8")], 2),
("named", """Step 1: Price per kg = 18 / 3 = 6 dollars
Step 2: Cost of 7 kg = 7 × Price per kg = 42 dollars""", [("= 42", "= 48")], 2),
("named", """Let x = 25 + 17 = 42.
Then 2x = 84 and x + 8 = 50.""", [("x + 8 = 50", "x + 8 = 52")], 2),
("named", """S = 4 + 9 + 16
S = 29
Average = S / 3 ≈ 9.67""", [("S = 29", "S = 31"), ("≈ 9.67", "≈ 10.33")], 2),
("named", """Revenue R = 320 × 5 = 1600.
Costs C = 950.
Profit = R - C = 650.""", [("= 650", "= 750")], 3),
("named", """The width is w = 8 and the length is L = 3w = 24.
The area is L \\times w = 192.""", [("= 192", "= 182")], 2),
# --- unknowns: algebra where one side holds unknowns
("unknowns", """\\[ 52 - 7 = 5xy \\]
\\[ 45 = 5xy \\]
\\[ xy = 9 \\]""", [("\\[ 45 = 5xy", "\\[ 47 = 5xy")], 2),
("unknowns", """\\[ 90 - \\frac{810}{9} = 4AB^2 \\]
So \\(4AB^2 = 0\\) and \\(AB = 0\\).""", [("4AB^2 = 0\\)", "4AB^2 = 9\\)")], 2),
("unknowns", """We have 3a + 12 = 30, so 3a = 30 - 12 = 18 and a = 6.""", [("= 18 and", "= 16 and")], 1),
("unknowns", """49 - 6 = 43 = 3ab, so ab = 43/3.""", [("= 43 =", "= 45 =")], 1),
("unknowns", """2x + 5 = 17
2x = 12
x = 6""", [("2x = 12", "2x = 14")], 2),
("unknowns", """The equation 7y = 91 gives y = 91 / 7 = 13.""", [("= 13", "= 14")], 1),
("unknowns", """Expanding, (x + 3)(x + 4) = x^2 + 7x + 12, and at x = 1 this is 1 + 7 + 12 = 20.""", [("= 20", "= 21")], 1),
("unknowns", """5AD^2 = 125 means AD^2 = 125 / 5 = 25, so AD = 5.""", [("= 25,", "= 24,")], 1),
# --- rounded: rounded inputs and truncated results
("rounded", """x = \\sqrt{10} \\approx 3.1623
x^2 = (3.1623)^2 = 10""", [("(3.1623)^2 = 10", "(3.1623)^2 = 11")], 2),
("rounded", """Each week is 100 ÷ 7 = 14.28 hours.""", [("14.28", "14.27")], 1),
("rounded", """One third is 0.333, so 0.333 × 90 = 30 minutes.""", [("= 30 minutes", "= 33 minutes")], 1),
("rounded", """\\(\\sqrt{3} \\approx 1.7320\\), so the height is \\(1.7320 \\times 6 = 10.392\\).""", [("= 10.392", "= 10.932")], 1),
("rounded", """The rate is 2/3 ≈ 0.67, so in 12 hours: 0.67 × 12 = 8.""", [("= 8.", "= 9.")], 1),
("rounded", """Pi ≈ 3.14, so the circumference is 3.14 × 10 = 31.4 cm.""", [("= 31.4", "= 34.1")], 1),
("rounded", """Each share is 50 / 3 = 16.67 dollars; three shares are 16.67 × 3 = 50 dollars.""", [("16.67 × 3 = 50", "16.67 × 3 = 51")], 1),
("rounded", """The speed is 125 / 9 = 13.88 m/s.""", [("13.88", "13.98")], 1),
]


def build() -> list:
    rows = []
    for k, (style, good, edits, line) in enumerate(ITEMS):
        bad = good
        for old, new in edits:
            assert old in bad, (k, old)
            bad = bad.replace(old, new, 1)
        rows.append(dict(index=2 * k, style=style, solution=good, label=0, error_line=None))
        rows.append(dict(index=2 * k + 1, style=style, solution=bad, label=1, error_line=line))
    return rows


if __name__ == "__main__":
    rows = build()
    with open(sys.argv[1], "w") as f:
        for r in rows: f.write(json.dumps(r) + "\n")
    print(len(rows), "rows")
