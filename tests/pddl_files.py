"""A small typed user domain (gripper: a type hierarchy, domain constants) for the PDDL family's tests."""

GRIPPER = """(define (domain gripper-typed)
  (:requirements :strips :typing)
  (:types room ball gripper - object)
  (:constants left right - gripper)
  (:predicates (at-robby ?r - room) (at ?b - ball ?r - room) (free ?g - gripper) (carry ?o - ball ?g - gripper))
  (:action move :parameters (?from ?to - room)
    :precondition (at-robby ?from)
    :effect (and (at-robby ?to) (not (at-robby ?from))))
  (:action pick :parameters (?obj - ball ?room - room ?g - gripper)
    :precondition (and (at ?obj ?room) (at-robby ?room) (free ?g))
    :effect (and (carry ?obj ?g) (not (at ?obj ?room)) (not (free ?g))))
  (:action drop :parameters (?obj - ball ?room - room ?g - gripper)
    :precondition (and (carry ?obj ?g) (at-robby ?room))
    :effect (and (at ?obj ?room) (free ?g) (not (carry ?obj ?g)))))
"""


def gripper_problem(k: int, balls: int) -> str:
    names = " ".join(f"ball{i}" for i in range(1, balls + 1))
    init = " ".join(f"(at ball{i} rooma)" for i in range(1, balls + 1))
    goal = " ".join(f"(at ball{i} roomb)" for i in range(1, balls + 1))
    return f"""(define (problem gripper-{k}) (:domain gripper-typed)
  (:objects rooma roomb - room {names} - ball)
  (:init (at-robby rooma) (free left) (free right) {init})
  (:goal (and {goal})))
"""
