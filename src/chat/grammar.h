// Grammars for constrained decoding: GBNF text (llama.cpp's grammar syntax) compiled to rules
// over Unicode code points, and a matcher that walks UTF-8 bytes through them.
//
// Syntax (a superset of llama.cpp's GBNF):
//   name ::= alternatives          rule; names are [A-Za-z0-9_-]+, `root` is where matching starts
//   a b c                          sequence
//   a | b                          alternation (a line break before or after `|` is fine)
//   ( ... )                        group
//   "literal"                      code points; escapes \n \r \t \\ \" \' \[ \] \- \/ \xHH \uHHHH \UHHHHHHHH
//   [a-z0-9_] [^"\\]               character class, negated class (same escapes)
//   .                              any code point
//   x? x* x+ x{m} x{m,} x{m,n}     repetition (bounds at most kMaxRepeat)
//   # comment                      to the end of the line
// A rule ends at a line break unless inside a group or next to `|`.
//
// Errors (invalid_argument, "line L, column C: reason"): syntax, an undefined rule, a rule
// defined twice, no `root`, left recursion (a rule that can reach itself before consuming a
// character; this includes a repetition of something that can match nothing).
//
// Matching: a grammar compiles to a flat array of elements; each rule is a list of alternatives,
// each alternative a run of elements ending in `end`. A matcher state is a set of stacks; a stack
// is a chain of frames (position of the next element, parent frame to return to). Frames live in
// an arena owned by the matcher and are shared between stacks, so forking a state to test a
// candidate token costs nothing and undoing it is truncating the arena (push_byte/pop). States
// are lazy: a stack's top may be a rule reference or a nullable element, expanded only as the
// next character arrives, so only paths that consume it allocate frames. `[class]*` compiles to
// one looping element that consumes a character without allocating anything, which keeps long
// strings cheap; a rule reference in tail position reuses its caller's frame, so right-recursive
// repetitions do not grow the stack. A bounded repetition x{m,n} (n >= 2; also the m mandatory
// copies of x{m,}) is one `repeat` element whose iteration count lives in the stack frame, so
// `json-char{0,400}` is one element and one frame per step instead of 400 nested rules.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace hearth::chat {

constexpr int kMaxRepeat = 10000;       // largest m or n in x{m,n}
constexpr int kMaxGrammarElems = 1 << 22;  // compiled size limit (elements), against hostile input

class Grammar {
public:
    // Parses GBNF text; `root` names the start rule.
    static Result<std::shared_ptr<const Grammar>> parse(std::string_view text, std::string_view root = "root");

    enum class Op : uint8_t {
        end,         // end of an alternative: return to the parent frame
        chars,       // one code point of class `arg`
        chars_star,  // any number of code points of class `arg` (a loop that never allocates)
        rule,        // rule `arg`
        repeat,      // repeats()[arg]: its item min..max times, the count kept in the stack frame
    };
    struct Elem {
        Op op;
        uint32_t arg;
    };
    // x{m,n} with n >= 2: one looping element instead of a chain of nested optional rules, so a
    // long bounded string is one matcher state per count rather than a new rule per character.
    // An item that can match nothing never iterates empty (min is 0 then: same language).
    struct Repeat {
        Elem item;  // chars or rule
        uint32_t min, max;
    };
    struct CharClass {
        std::vector<std::pair<uint32_t, uint32_t>> ranges;  // inclusive, sorted, merged; already negated
        std::array<uint64_t, 2> ascii{};                    // membership of code points 0..127
    };

    bool matches(uint32_t cls, uint32_t cp) const {
        if (cp < 128) return (classes_[cls].ascii[cp >> 6] >> (cp & 63)) & 1;
        return matches_slow(cls, cp);
    }
    // True when some code point in [lo, hi] is in the class.
    bool intersects(uint32_t cls, uint32_t lo, uint32_t hi) const;
    bool classes_intersect(uint32_t a, uint32_t b) const;
    const CharClass& char_class(uint32_t cls) const { return classes_[cls]; }

    const std::vector<Elem>& elems() const { return elems_; }
    const std::vector<Repeat>& repeats() const { return repeats_; }
    // Alternatives of rule r: elems() indices alt_starts()[rule_alts()[r] .. rule_alts()[r + 1]).
    const std::vector<uint32_t>& rule_alts() const { return rule_alts_; }
    const std::vector<uint32_t>& alt_starts() const { return alt_starts_; }
    bool is_nullable(uint32_t rule) const { return nullable_[rule]; }
    uint32_t root() const { return root_; }
    size_t n_rules() const { return rule_names_.size(); }
    const std::string& rule_name(uint32_t r) const { return rule_names_[r]; }

private:
    friend class GrammarCompiler;
    bool matches_slow(uint32_t cls, uint32_t cp) const;

    std::vector<Elem> elems_;
    std::vector<Repeat> repeats_;
    std::vector<uint32_t> alt_starts_;
    std::vector<uint32_t> rule_alts_;  // [n_rules + 1]
    std::vector<CharClass> classes_;
    std::vector<std::string> rule_names_;  // synthetic rules: "<parent>-<n>"
    std::vector<bool> nullable_;           // [n_rules] the rule can match the empty string
    uint32_t root_ = 0;
};

// A position in a grammar, advanced byte by byte. push_byte() tries one byte: on success the new
// state is pushed (pop() undoes it), on failure nothing changes. commit() forgets the undo
// history, keeping the current state. Not thread-safe; cheap to create (the grammar is shared).
class GrammarMatcher {
public:
    explicit GrammarMatcher(std::shared_ptr<const Grammar> grammar);

    bool push_byte(uint8_t byte);
    void pop();
    size_t n_pushed() const { return levels_.size() - 1; }
    void commit();
    // Pushes all of `bytes`, then commits; on a rejected byte pops back to where it started and
    // returns false.
    bool accept(std::string_view bytes);

    // The bytes so far are a complete sentence of the grammar.
    bool can_end() const;
    // can_end() and no further byte is possible.
    bool is_complete() const;
    // Some byte can follow (false after a complete sentence that allows nothing more).
    bool can_continue() const;
    // A key that is equal for equal states reached from the same committed history (frame ids
    // compare, not structure): what a per-state cache can be keyed on. Changes meaning after
    // compaction; see generation().
    void state_key(std::vector<uint32_t>& out) const;
    // Bumped when commit() compacts the frame arena (cached keys are stale then).
    uint64_t generation() const { return generation_; }
    size_t n_stacks() const;
    const Grammar& grammar() const { return *g_; }
    // The state is one stack inside a `[class]*` loop whose exit cannot take any character of
    // the class, and no code point is open: then every string of the class's characters leads
    // back to this very state, and the caller may decide such strings without walking them.
    // Returns the class, or -1.
    int64_t loop_class() const;
    // The counted analogue: the state is one stack at a counted repetition whose every
    // iteration that starts with a character of class `cls` consumes exactly that one character
    // (the item is the class, or a rule with the class as one alternative and no other
    // alternative able to start with it), whose exit cannot take the class, and no code point
    // is open. Then a string of k class characters is accepted iff k <= remaining, and after j of
    // them the state is the same up to the count. `rep` is one UTF-8 character of the class.
    struct CountedLoop {
        uint32_t cls;
        uint32_t remaining;  // iterations left (max - count)
        std::string rep;
    };
    bool counted_loop(CountedLoop& out) const;

private:
    static constexpr int32_t kAccept = -2;  // an empty stack: the input so far is complete
    struct Frame {
        uint32_t pos;    // next element to match
        int32_t parent;  // frame to return to at `end`, -1 at the bottom
        uint32_t count;  // at a `repeat` element: iterations done; 0 elsewhere
    };
    struct Level {
        uint32_t heads_begin, heads_end;  // this state's stacks: heads_[begin, end)
        uint32_t frames_before, heads_before;  // arena sizes before this level (pop restores them)
        uint32_t cp = 0;   // partial code point bits
        uint8_t need = 0;  // continuation bytes still expected
        uint8_t len = 0;   // total bytes of the partial code point
    };
    struct VFrame;  // a continuation on the C++ stack (can_take)

    void take(uint32_t pos, int32_t parent, int32_t self, uint32_t count, uint32_t cp, uint32_t out_begin);
    bool can_take(uint32_t pos, uint32_t count, const VFrame* v, int32_t parent, uint32_t lo, uint32_t hi) const;
    bool can_end_from(uint32_t pos, uint32_t count, int32_t parent) const;
    bool exit_meets(uint32_t pos, uint32_t count, const VFrame* v, int32_t parent, uint32_t cls) const;
    template <class Meets>
    bool first_char_meets(uint32_t pos, uint32_t count, const VFrame* v, int32_t parent, const Meets& meets) const;
    bool starts_with_class(uint32_t pos, uint32_t cls, int depth) const;
    // A frame made during the current push_byte at a repeat with count > 0 is the continuation
    // of an iteration that has not consumed anything yet: reaching it means an empty iteration.
    bool is_empty_iteration(int32_t frame) const {
        return frame >= static_cast<int32_t>(take_floor_) && frames_[frame].count > 0 &&
               elems_[frames_[frame].pos].op == Grammar::Op::repeat;
    }
    void emit(int32_t frame, uint32_t out_begin);
    void emit_new(uint32_t pos, int32_t parent, uint32_t count, uint32_t out_begin);
    void compact();

    std::shared_ptr<const Grammar> g_;
    const Grammar::Elem* elems_;
    const Grammar::Repeat* repeats_;
    uint32_t take_floor_ = 0;  // frames_ size when the current push_byte began
    std::vector<Frame> frames_;
    std::vector<int32_t> heads_;
    std::vector<Level> levels_;  // levels_[0]: the committed state; never empty
    uint64_t generation_ = 0;
    size_t compact_at_ = 1 << 16;  // frames_ size that triggers compaction at the next commit
};

}  // namespace hearth::chat
