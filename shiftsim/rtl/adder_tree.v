// shiftsim reference RTL -- the T-input adder tree (SPEC 5.1: "the adder tree over the group's
// channels is exact"). Written as a sum over the lanes; its width TREEW = TW + clog2(T) holds
// every sum exactly. (Synthesis builds T-1 adders of that width.)
module adder_tree #(
    parameter integer T     = 4,
    parameter integer TW    = 10,
    parameter integer TREEW = 12
) (
    input  wire [T*TW-1:0]  terms,   // lane i in bits [i*TW +: TW], two's complement
    output reg  [TREEW-1:0] sum
);
    integer i;
    always @* begin
        sum = {TREEW{1'b0}};
        for (i = 0; i < T; i = i + 1)
            sum = $signed(sum) + $signed(terms[i*TW +: TW]);
    end
endmodule
